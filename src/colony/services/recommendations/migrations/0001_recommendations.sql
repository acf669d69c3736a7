-- How many completed orders held both listings, stored in both directions so that one
-- index range answers "bought together with X".
CREATE TABLE co_purchases (
    listing_id TEXT NOT NULL,
    other_id TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score > 0),
    PRIMARY KEY (listing_id, other_id)
) WITHOUT ROWID;
-- Covers bought_together: its rows come out in answer order, no sort, no table lookup.
CREATE INDEX co_purchases_best ON co_purchases (listing_id, score DESC, other_id);
