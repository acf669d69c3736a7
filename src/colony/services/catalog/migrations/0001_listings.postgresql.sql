-- PostgreSQL's version of 0001_listings.sql: the same tables, with full-text search as a
-- weighted tsvector column and a GIN index instead of an FTS5 table and its triggers.
CREATE TABLE categories (
    slug TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    position BIGINT NOT NULL
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

-- English stemming like FTS5's porter tokenizer, and, like it, no stop words: the stock
-- english configuration would drop "the" or "it" from a query and find nothing for them.
CREATE TEXT SEARCH DICTIONARY listings_stem (TEMPLATE = snowball, LANGUAGE = english);
CREATE TEXT SEARCH CONFIGURATION listings_text (COPY = english);
ALTER TEXT SEARCH CONFIGURATION listings_text
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
    WITH listings_stem;

CREATE TABLE listings (
    id TEXT PRIMARY KEY,
    seller_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL REFERENCES categories (slug),
    price_minor BIGINT NOT NULL CHECK (price_minor > 0),
    currency TEXT NOT NULL,
    image_url TEXT,
    status TEXT NOT NULL CHECK (status IN ('active', 'delisted')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    -- Kept by the database on every write, as the FTS5 triggers do; a title word ranks
    -- above a description word.
    search tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('listings_text', title), 'A')
        || setweight(to_tsvector('listings_text', description), 'B')
    ) STORED
);
CREATE INDEX listings_by_seller ON listings (seller_id, created_at);
CREATE INDEX listings_by_category_price ON listings (status, category, price_minor);
CREATE INDEX listings_by_price ON listings (status, price_minor);
CREATE INDEX listings_by_created ON listings (status, created_at);
CREATE INDEX listings_by_text ON listings USING GIN (search);
