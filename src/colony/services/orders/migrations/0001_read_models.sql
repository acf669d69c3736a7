-- Read models, projected from the order streams; rebuildable at any time.
CREATE TABLE buyer_orders (
    order_id TEXT PRIMARY KEY,
    buyer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    item_count INTEGER NOT NULL,
    total_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX buyer_orders_by_buyer ON buyer_orders (buyer_id, created_at DESC);

CREATE TABLE seller_orders (
    order_id TEXT NOT NULL,
    seller_id TEXT NOT NULL,
    buyer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    lines BLOB NOT NULL,
    subtotal_minor INTEGER NOT NULL,
    refunded_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (order_id, seller_id)
);
CREATE INDEX seller_orders_by_seller ON seller_orders (seller_id, created_at DESC);
