-- Counts of recent log-in attempts per key (see throttle.py), kept here so that every replica
-- of the gateway and of identity sees the same counts.
CREATE TABLE login_throttle (
    key TEXT PRIMARY KEY,
    attempts INTEGER NOT NULL,
    locked_until REAL NOT NULL,
    lock_seconds REAL NOT NULL,
    last_attempt_at REAL NOT NULL
);
CREATE INDEX login_throttle_last_attempt ON login_throttle (last_attempt_at);

-- (e-mail, address) pairs that logged in: the owner's own devices, which a run of failures
-- against the account from elsewhere does not hold back.
CREATE TABLE login_familiar (
    key TEXT PRIMARY KEY,
    last_success_at REAL NOT NULL
);

-- Tokens logged out before they expire; gateways fetch the recent ones every few seconds.
CREATE TABLE revoked_tokens (
    token_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL NOT NULL
);
CREATE INDEX revoked_tokens_revoked_at ON revoked_tokens (revoked_at);
