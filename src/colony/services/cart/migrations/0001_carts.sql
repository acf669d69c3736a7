CREATE TABLE cart_lines (
    buyer_id TEXT NOT NULL,
    listing_id TEXT NOT NULL,
    seller_id TEXT NOT NULL,
    title TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 99),
    -- The price when added: shown only when the catalog cannot be asked for today's.
    unit_price_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    unavailable INTEGER NOT NULL DEFAULT 0,
    added_at TEXT NOT NULL,
    PRIMARY KEY (buyer_id, listing_id)
);
CREATE INDEX cart_lines_by_listing ON cart_lines (listing_id);
