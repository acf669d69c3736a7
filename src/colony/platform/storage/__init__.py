"""Storage: one database per service, reached through :class:`Database`."""

from colony.platform.storage.database import Database, Row, open_database

__all__ = ["Database", "Row", "open_database"]
