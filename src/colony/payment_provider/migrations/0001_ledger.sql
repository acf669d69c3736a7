-- The simulator's own state: payment intents and refunds (idempotency keys live in the
-- platform's table).

CREATE TABLE payment_intents (
    id TEXT PRIMARY KEY,
    -- The Idempotency-Key of the authorization that created it: one intent per key, ever.
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL
        CHECK (status IN ('authorized', 'declined', 'captured', 'voided', 'refunded')),
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    captured_amount INTEGER NOT NULL DEFAULT 0,
    refunded_amount INTEGER NOT NULL DEFAULT 0,
    decline_code TEXT,
    card_last4 TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    -- The money invariants hold in the schema too, whatever the code above it does.
    CHECK (captured_amount BETWEEN 0 AND amount),
    CHECK (refunded_amount BETWEEN 0 AND captured_amount)
);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    payment_intent_id TEXT NOT NULL REFERENCES payment_intents (id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    created_at TEXT NOT NULL
);
CREATE INDEX refunds_by_intent ON refunds (payment_intent_id);
