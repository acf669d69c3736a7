-- Units held for an order until it commits (sold) or lets go (released, expired, returned).
CREATE TABLE reservations (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL
        CHECK (status IN ('held', 'committed', 'released', 'expired', 'returned')),
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX reservations_held_by_expiry ON reservations (expires_at) WHERE status = 'held';

CREATE TABLE reservation_lines (
    reservation_id TEXT NOT NULL REFERENCES reservations (id),
    listing_id TEXT NOT NULL REFERENCES stock (listing_id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, listing_id)
);
