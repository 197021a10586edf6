"""``python -m reference.ea run --config ea.json [--instance NAME] [--state-dir DIR]``: one EA instance.

The config is a JSON object of ``reference.ea.streamer.EAConfig`` fields. Exit status: 0 stopped (SIGTERM/SIGINT),
3 broker reconnects used up (EA-4, alerted), 4 could not start (a port taken, a bad config: one line on stderr),
75 broker unreachable 30 s (EA-4: the supervisor restarts it).
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from reference.ea.streamer import EXIT_START_FAILED, EAConfig, TickStreamer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference.ea")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="stream ticks from the broker on UDP and TCP")
    run.add_argument("--config", required=True)
    run.add_argument("--instance")
    run.add_argument("--state-dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        with open(args.config) as fh:
            raw = json.load(fh)
        if args.instance:
            raw["instance"] = args.instance
        if args.state_dir:
            raw["state_dir"] = args.state_dir
        streamer = TickStreamer(EAConfig.from_dict(raw))
    except (OSError, ValueError, TypeError) as exc:
        print(f"reference.ea: cannot start: {exc}", file=sys.stderr)
        return EXIT_START_FAILED
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: streamer.stop())
    return streamer.run()


if __name__ == "__main__":
    sys.exit(main())
