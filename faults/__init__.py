"""Fault injectors: everything that breaks things, each fault able to heal what it broke.

- faults.core       Fault (inject/heal/describe, context manager), FaultLog (JSON lines), FaultState, heal_active
- faults.process    Kill, Terminate, Pause, Restart, CrashLoop on any node handle
- faults.proxy      the Toxiproxy-compatible fault proxy (TCP + UDP), embeddable or `tradedrill faults proxy serve`
- faults.network    ToxiproxyAPI, LinkFaults and the link faults (latency, down, blackhole, reset, ... UDP loss)
- faults.kernel     nftables faults: UDP loss, partitions, isolation (root)
- faults.partition  Redis partition shapes
- faults.files      DuckDB corruption, lost unfsynced writes, disk full, file size limit, config corruption
"""
