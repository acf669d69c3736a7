-- One row per saga: where it is, its state, and who is running it. The row changes in the
-- transaction that records each step, with whatever the step's owner writes (events, outbox).
CREATE TABLE saga_instances (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'compensating', 'completed', 'cancelled')),
    step INTEGER NOT NULL,
    state BLOB NOT NULL,
    reason TEXT,
    failed_step TEXT,
    cancel_requested TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    deadline_at TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_until TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX saga_instances_open ON saga_instances (next_attempt_at)
    WHERE status IN ('running', 'compensating');
