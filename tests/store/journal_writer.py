"""A process that writes an engine journal the way a running engine does, then dies without closing it (the WAL
stays, as after a crash), or holds it open (the lock case). Run as ``python -m tests.store.journal_writer``.

    journal_writer DB --intents N [--first K] [--snapshot] [--after M] [--state SENDING] [--hold]

A snapshot checkpoints the journal (``reference.store.snapshots``): right after it the file holds every write and
there is no WAL. ``--after M`` writes M final (DONE) intents ``d<K>``.. after the snapshot, as the engine writes in
the moments between two snapshots: they are in the WAL only, and a repair from the snapshot misses them."""
from __future__ import annotations

import argparse
import os
import sys

from reference.engine.journal import Intent, Journal


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("--intents", type=int, default=50)
    ap.add_argument("--first", type=int, default=0, help="number of the first signal (s<first>...)")
    ap.add_argument("--state", default="SENDING")
    ap.add_argument("--snapshot", action="store_true", help="take a snapshot after the writes")
    ap.add_argument("--after", type=int, default=0, help="final intents written after the snapshot (in the WAL)")
    ap.add_argument("--hold", action="store_true", help="keep the journal open until stdin closes")
    args = ap.parse_args()
    journal = Journal(args.db)
    for i in range(args.first, args.first + args.intents):
        journal.put(Intent(signal_id=f"s{i}", entry_id=f"{1000 + i}-0", state=args.state, attempt=1,
                           comment=f"tds{i}-1", broker="primary",
                           signal={"account": "5001", "symbol": "EURUSD", "side": "buy", "volume": 0.01}))
    if args.snapshot:
        journal.snapshot()
    for i in range(args.first, args.first + args.after):
        journal.put(Intent(signal_id=f"d{i}", entry_id=f"{2000 + i}-0", state="DONE", attempt=1,
                           comment=f"tdd{i}-1", broker="primary", result={"status": "executed", "order": 1 + i},
                           signal={"account": "5001", "symbol": "EURUSD", "side": "buy", "volume": 0.01}))
    print("ready", journal.hwm, flush=True)
    if args.hold:
        sys.stdin.read()
        journal.close()
        return
    os._exit(0)   # a crash: no close, no checkpoint, the WAL holds the writes


if __name__ == "__main__":
    main()
