CREATE TABLE categories (
    slug TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    position INTEGER NOT NULL
);

INSERT INTO categories (slug, name, position) VALUES
    ('electronics', 'Electronics', 1),
    ('books', 'Books', 2),
    ('home-kitchen', 'Home & Kitchen', 3),
    ('fashion', 'Fashion', 4),
    ('sports-outdoors', 'Sports & Outdoors', 5),
    ('toys-games', 'Toys & Games', 6),
    ('beauty', 'Beauty', 7),
    ('garden', 'Garden', 8),
    ('music', 'Music', 9),
    ('grocery', 'Grocery', 10),
    ('pets', 'Pets', 11),
    ('office', 'Office', 12);

CREATE TABLE listings (
    id TEXT PRIMARY KEY,
    seller_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL REFERENCES categories (slug),
    price_minor INTEGER NOT NULL CHECK (price_minor > 0),
    currency TEXT NOT NULL,
    image_url TEXT,
    status TEXT NOT NULL CHECK (status IN ('active', 'delisted')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX listings_by_seller ON listings (seller_id, created_at);
CREATE INDEX listings_by_category_price ON listings (status, category, price_minor);
CREATE INDEX listings_by_price ON listings (status, price_minor);
CREATE INDEX listings_by_created ON listings (status, created_at);

-- Full-text index over titles and descriptions, kept in step by triggers.
CREATE VIRTUAL TABLE listings_fts USING fts5 (
    title, description, content = 'listings', content_rowid = 'rowid',
    tokenize = 'porter unicode61'
);
CREATE TRIGGER listings_fts_insert AFTER INSERT ON listings BEGIN
    INSERT INTO listings_fts (rowid, title, description)
    VALUES (new.rowid, new.title, new.description);
END;
CREATE TRIGGER listings_fts_delete AFTER DELETE ON listings BEGIN
    INSERT INTO listings_fts (listings_fts, rowid, title, description)
    VALUES ('delete', old.rowid, old.title, old.description);
END;
CREATE TRIGGER listings_fts_update AFTER UPDATE OF title, description ON listings BEGIN
    INSERT INTO listings_fts (listings_fts, rowid, title, description)
    VALUES ('delete', old.rowid, old.title, old.description);
    INSERT INTO listings_fts (rowid, title, description)
    VALUES (new.rowid, new.title, new.description);
END;
