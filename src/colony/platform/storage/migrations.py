"""Versioned schema migrations: numbered SQL files per component, applied at start.

A small runner of our own rather than yoyo or Alembic: each file is applied through the
service's own :class:`Database` in one transaction together with its version row, so a crash
never leaves a half-applied version, and the same runner serves every engine without a second
driver stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from colony.platform.clock import utc_now_iso
from colony.platform.storage.database import Database

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
PLATFORM_MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True, slots=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str


def discover(component: str, folder: Path) -> list[Migration]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path}")
        found.append(Migration(component, int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {folder}")
    return found


async def migrate(db: Database, component: str, folder: Path) -> list[Migration]:
    """Apply the component's pending migrations in version order; returns what was applied."""
    await db.run_script(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL, PRIMARY KEY (component, version));"
    )
    rows = await db.fetch_all(
        "SELECT version FROM schema_migrations WHERE component = ?", (component,)
    )
    done = {row[0] for row in rows}
    applied = []
    for migration in discover(component, folder):
        if migration.version in done:
            continue
        record = (
            "INSERT INTO schema_migrations (component, version, name, applied_at) "
            f"VALUES ('{component}', {migration.version}, '{migration.name}', '{utc_now_iso()}');"
        )
        await db.run_script(migration.sql + "\n" + record)
        applied.append(migration)
    return applied
