-- One shipment per seller per order; the UNIQUE pair is what makes creating them idempotent
-- even when two callers race (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE shipments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    seller_id TEXT NOT NULL,
    buyer_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (
        status IN ('pending', 'label_created', 'picked_up', 'in_transit', 'delivered', 'cancelled')
    ),
    -- JSON, written as bytes (which SQLite kept as such when these were declared TEXT).
    address BLOB NOT NULL,
    lines BLOB NOT NULL,
    -- Bumped on every change: couriers claim a step with a conditional UPDATE on it.
    version INTEGER NOT NULL,
    -- When the courier may take the next step; NULL when the shipment is not with the courier.
    -- Durable, so a restarted (or another) courier resumes where this one stopped.
    next_step_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (order_id, seller_id),
    CHECK ((next_step_at IS NOT NULL) = (status IN ('label_created', 'picked_up', 'in_transit')))
);
CREATE INDEX shipments_due ON shipments (next_step_at) WHERE next_step_at IS NOT NULL;

-- Every status a shipment went through, oldest first.
CREATE TABLE tracking_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    shipment_id TEXT NOT NULL REFERENCES shipments (id),
    status TEXT NOT NULL,
    at TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX tracking_events_by_shipment ON tracking_events (shipment_id, seq);
