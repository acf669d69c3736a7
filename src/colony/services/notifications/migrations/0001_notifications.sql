-- Who can be mailed: kept from identity's AccountRegistered (notifications owns this copy).
CREATE TABLE recipients (
    account_id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- The in-app feed. ``event_key`` names what happened from the recipient's side
-- (e.g. ``order.completed:<order id>``, ``sale.received:<order id>``) and the id is derived from
-- it, so an event applied twice (a replay, a republish under another message id) adds nothing.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    event_key TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    link TEXT,
    created_at TEXT NOT NULL,
    read_at TEXT,
    UNIQUE (event_key, user_id)
);
CREATE INDEX notifications_feed ON notifications (user_id, created_at);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;

CREATE TABLE webhook_endpoints (
    seller_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- The dispatch outbox: e-mails and webhooks queued in the transaction that consumed the event,
-- sent by the dispatcher afterwards. Retry state lives in the row, so it survives a restart.
--   next_attempt_at  unix seconds; a claimed row is pushed a lease ahead while it is in flight
--   attempts         every failed or successful try, over the row's whole life
--   round_base       attempts at the last replay: the give-up budget counts from here
--   awaiting_recipient  1 while an e-mail waits for its recipient's address (not an attempt)
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    event_key TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    recipient_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    subject TEXT,
    payload BLOB NOT NULL,
    target TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    round_base INTEGER NOT NULL DEFAULT 0,
    awaiting_recipient INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    delivered_at TEXT,
    UNIQUE (event_key, channel, recipient_id)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_recipient ON deliveries (recipient_id, channel, created_at);
