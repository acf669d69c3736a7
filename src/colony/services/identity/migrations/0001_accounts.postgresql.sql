-- PostgreSQL's version of 0001_accounts.sql. PostgreSQL has no NOCASE collation: e-mails are
-- stored lower-cased, and a unique index on lower(email) refuses one differing only in case.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('buyer', 'seller', 'admin')),
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX accounts_email_nocase ON accounts (lower(email));

-- Private keys live here so that a restart keeps tokens valid; a deployment that has a KMS
-- keeps them there instead.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    private_key_pem TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at TEXT NOT NULL,
    retired_at TEXT
);
