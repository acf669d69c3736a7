-- Append-only event streams. ``position`` orders every event of the store (projections read
-- by it); ``(stream_id, version)`` is unique, which is the optimistic-concurrency check.
CREATE TABLE event_store (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    recorded_at TEXT NOT NULL,
    UNIQUE (stream_id, version)
);

-- How far each projection has read, written with the projection's own rows.
CREATE TABLE projection_checkpoints (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
