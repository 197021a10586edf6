"""The reference backend (BE-1..4, TV-4): the TradingView webhook, trade status from RTS, UDF chart history from
ClickHouse; FastAPI under uvicorn, stateless, two instances behind nginx (``tradedrill.services.nginx``).

- ``config``: :class:`BackendConfig` (JSON file, secrets in files of their own);
- ``webhook``: alert parsing, constant-time passphrase, per-source rate limit, the alert-id claim;
- ``datafeed``: TradingView's UDF endpoints from ClickHouse;
- ``app``: ``create_app(config)``; ``python -m reference.backend run --config f.json`` serves it.
"""
