"""Broker adapters and the MetaTrader 5 simulator.

The engine talks to "an mt5-like object": the real ``MetaTrader5`` module, an ``mt5linux.MetaTrader5`` instance, or
our ``SimulatorTerminal``; all expose the same function names, named tuples and constants. Get one with::

    from reference.mt5.port import connect, open_terminal
    mt5 = open_terminal("simulator", host="127.0.0.3", port=18812, call_timeout=5.0)   # not yet initialized
    mt5.initialize(login=5001, password="", server="TradeDrill-Sim")
    # or in one step, from configuration:
    mt5 = connect({"kind": "simulator", "host": "127.0.0.3", "port": 18812, "login": 5001})

    r = mt5.order_send({"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1,
                        "type": mt5.ORDER_TYPE_BUY, "magic": 42, "comment": "sig-abc"})
    if r is None: code, text = mt5.last_error()          # -10005 'IPC timeout': outcome unknown, reconcile
    elif r.retcode == mt5.TRADE_RETCODE_DONE: ...

Start a simulator: ``tradedrill mt5sim serve --host 127.0.0.3 --port 18812 --state-dir DIR --seed 1
--admin-token-file TOKEN`` (loopback only unless ``--allow-remote``; TOKEN mode 0600), or from Python
``tradedrill.services.mt5sim.simulator_node(...)`` -> ProcessNode (it makes ``<state_dir>/admin.token``).
Default accounts: 5001 (hedging) and 5002 (netting), no password; symbols EURUSD, GBPUSD, USDJPY, XAUUSD.
Harness side: ``reference.mt5.simclient.SimulatorAdmin(host, port, token=read_admin_token(TOKEN))`` ->
``set_behaviour(**changes)``, ``behaviour()``, ``ledger(login=None, since_ticket=0)``, ``orders()``,
``accounts()``, ``config()``, ``ping()`` (only ping works without the token; no call returns a password).

Modules: ``constants`` (exact values), ``types`` (named tuples, dtypes), ``port`` (factory), ``simclient``
(client + admin), ``simcli`` (CLI), ``simulator/`` (the server).
"""
