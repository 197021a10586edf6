"""A simulated MetaTrader 5 broker: trade server, durable ledger and price feed, as its own process.

Why we write our own: the MetaTrader5 Python package ships Windows wheels only and talks to a running MT5 terminal
through IPC; no terminal (and no broker server) can run on this project's Linux machines or in CI. The harness also
needs what a real broker never gives: faults on demand (requotes, lost replies, closed markets, throttling) and the
full ledger of executed deals as ground truth for duplicate checks. So the simulator mirrors the package's surface
(``MT5_API.md``) exactly and is a separate process that can be killed, paused and cut off through a TCP proxy.

Modules: ``broker`` (trade semantics + state), ``journal`` (durability), ``ticks`` (seeded price walk),
``config`` (accounts, symbols, run-time behaviour), ``protocol`` (framing), ``server`` (asyncio TCP),
``node`` (ProcessNode factory).
"""
