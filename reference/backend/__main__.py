"""``python -m reference.backend run --config backend.json``: one backend instance under uvicorn (BE-1).

Exit status 2 with one line on stderr for a config that cannot be used; uvicorn's own log otherwise (no access
log: a request line per alert would be most of the log at load, and bodies are never logged: they hold the
passphrase).
"""
from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference.backend")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve one backend instance")
    run.add_argument("--config", required=True, help="the instance's JSON config (reference.backend.config)")
    args = parser.parse_args(argv)

    from .config import BackendConfig, ConfigError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = BackendConfig.load(args.config)
        from .app import create_app

        app = create_app(config)
    except (ConfigError, ValueError) as exc:
        print(f"backend: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    logging.getLogger("tradedrill.backend").info("backend %s serving on %s:%s", config.instance, config.host,
                                                  config.port)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=1, backlog=1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
