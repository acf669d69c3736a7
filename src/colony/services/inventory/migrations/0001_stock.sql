CREATE TABLE stock (
    listing_id TEXT PRIMARY KEY,
    seller_id TEXT NOT NULL,
    available INTEGER NOT NULL CHECK (available >= 0),
    reserved INTEGER NOT NULL CHECK (reserved >= 0),
    sold INTEGER NOT NULL CHECK (sold >= 0),
    received INTEGER NOT NULL CHECK (received >= 0),
    updated_at TEXT NOT NULL,
    CHECK (available + reserved + sold = received)
);

-- Every change to stock, so the current level can be audited against its history.
CREATE TABLE stock_movements (
    id TEXT PRIMARY KEY,
    listing_id TEXT NOT NULL REFERENCES stock (listing_id),
    kind TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX stock_movements_by_listing ON stock_movements (listing_id, at);
