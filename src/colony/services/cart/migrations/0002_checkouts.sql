-- Orders whose lines have been taken out of their buyer's cart: so doing it twice does nothing.
CREATE TABLE cart_checkouts (
    order_id TEXT PRIMARY KEY,
    buyer_id TEXT NOT NULL,
    at TEXT NOT NULL
);
