-- One payment per order. Every money column is an integer in minor units.
CREATE TABLE payments (
    order_id TEXT PRIMARY KEY,
    buyer_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN (
        'authorized', 'declined', 'captured', 'voided', 'partially_refunded', 'refunded'
    )),
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    -- Captures are always of the whole authorization.
    captured_minor INTEGER NOT NULL CHECK (captured_minor IN (0, amount_minor)),
    refunded_minor INTEGER NOT NULL CHECK (refunded_minor BETWEEN 0 AND captured_minor),
    decline_code TEXT,
    card_last4 TEXT NOT NULL,
    provider_intent_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX payments_by_status ON payments (status);

-- Each seller's part of a payment, what was refunded of it, and its payout once delivered.
-- The payout columns stay NULL until then; reversed_* is what refunds took back from it.
CREATE TABLE payment_sellers (
    order_id TEXT NOT NULL REFERENCES payments (order_id),
    seller_id TEXT NOT NULL,
    share_minor INTEGER NOT NULL CHECK (share_minor >= 0),
    refunded_minor INTEGER NOT NULL CHECK (refunded_minor BETWEEN 0 AND share_minor),
    paid_out_minor INTEGER CHECK (paid_out_minor >= 0),
    fee_minor INTEGER CHECK (fee_minor >= 0),
    reversed_payout_minor INTEGER NOT NULL DEFAULT 0 CHECK (reversed_payout_minor >= 0),
    reversed_fee_minor INTEGER NOT NULL DEFAULT 0 CHECK (reversed_fee_minor >= 0),
    paid_out_at TEXT,
    PRIMARY KEY (order_id, seller_id),
    CHECK (reversed_payout_minor <= coalesce(paid_out_minor, 0)),
    CHECK (reversed_fee_minor <= coalesce(fee_minor, 0))
);

-- Refunds, numbered per order. A row is written 'pending' before the provider is asked, so
-- the provider call never holds the write lock, and whoever comes next finishes the same
-- refund with the same Idempotency-Key and amount instead of starting a second one.
CREATE TABLE refunds (
    order_id TEXT NOT NULL REFERENCES payments (order_id),
    seq INTEGER NOT NULL CHECK (seq >= 1),
    seller_id TEXT,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    breakdown TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded')),
    provider_refund_id TEXT,
    created_at TEXT NOT NULL,
    completed_at TEXT,
    PRIMARY KEY (order_id, seq)
);
CREATE UNIQUE INDEX refunds_one_pending ON refunds (order_id) WHERE status = 'pending';

-- Double-entry ledger: the entries of one transaction_id sum to zero.
CREATE TABLE ledger_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT NOT NULL,
    account TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('capture', 'payout', 'refund')),
    at TEXT NOT NULL
);
CREATE INDEX ledger_entries_by_order ON ledger_entries (order_id, id);
CREATE INDEX ledger_entries_by_transaction ON ledger_entries (transaction_id);

-- Orders whose authorize ended with its outcome unknown and no payment recorded: the provider
-- may hold the card, so a void must ask it. A definite failure (nothing could have happened)
-- leaves no row. released_at is set once the void has settled it.
CREATE TABLE unsettled_authorizations (
    order_id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    released_at TEXT
);
