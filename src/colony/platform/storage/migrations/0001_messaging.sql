-- Tables the platform keeps in every service's database.

-- Transactional outbox: events written in the same transaction as the state change.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    payload BLOB NOT NULL,
    headers BLOB NOT NULL,  -- JSON, written as bytes (SQLite stored it so under TEXT too)
    created_at TEXT NOT NULL,
    published_at TEXT
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

-- Inbox: ids of messages a consumer has applied, recorded in the transaction of the effect.
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    message_id TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

-- Dead letters: messages a consumer failed to apply after its bounded retries.
CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY,
    consumer TEXT NOT NULL,
    message_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    message BLOB NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at TEXT NOT NULL,
    replayed_at TEXT
);
CREATE INDEX dead_letters_open ON dead_letters (failed_at) WHERE replayed_at IS NULL;

-- Idempotency keys, stored in the transaction that produced the response they replay.
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response BLOB NOT NULL,
    created_at TEXT NOT NULL
);
