"""``python -m colony.payment_provider --port 8181 --data-dir DIR``: the simulator alone."""

from __future__ import annotations

import argparse

from colony.payment_provider.server import DEFAULT_PORT, run
from colony.platform.config import Settings
from colony.platform.logging import configure_logging


def main() -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(
        prog="python -m colony.payment_provider", description="The payment-provider simulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--data-dir", default=str(settings.data_dir), help="where its SQLite file lives"
    )
    parser.add_argument(
        "--traces-url",
        default=settings.traces_url or f"http://127.0.0.1:{settings.port}",
        help="the marketplace's gateway, where the spans of traced requests go ('' for none)",
    )
    args = parser.parse_args()
    configure_logging(settings.log_level, settings.log_json)
    run(args.host, args.port, args.data_dir, args.traces_url or None)


if __name__ == "__main__":
    main()
