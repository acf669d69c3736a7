"""``python -m colony.mail_sink --smtp-port 8025 --http-port 8026 --data-dir DIR``."""

from __future__ import annotations

import argparse

from colony.mail_sink.server import DEFAULT_HTTP_PORT, DEFAULT_SMTP_PORT, run
from colony.platform.config import Settings
from colony.platform.logging import configure_logging


def main() -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(
        prog="python -m colony.mail_sink",
        description="A development SMTP server that keeps what it receives, listed over HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=DEFAULT_SMTP_PORT)
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT)
    parser.add_argument(
        "--data-dir",
        default=str(settings.data_dir),
        help="where its SQLite file lives (':memory:' keeps nothing)",
    )
    args = parser.parse_args()
    configure_logging(settings.log_level, settings.log_json)
    run(args.host, args.smtp_port, args.http_port, args.data_dir)


if __name__ == "__main__":
    main()
