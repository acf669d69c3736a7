-- Every message the sink accepted, as received: the raw bytes are the truth, the rest is
-- parsed once on arrival so listing never re-parses.
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL,
    peer TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    recipients TEXT NOT NULL,          -- JSON list of envelope recipients (RCPT TO)
    subject TEXT NOT NULL,
    message_id TEXT,
    text TEXT NOT NULL,
    size INTEGER NOT NULL,
    raw BLOB NOT NULL
);

-- One row per envelope recipient, lower-cased, so ``?to=`` is an indexed lookup.
CREATE TABLE message_recipients (
    seq INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    address TEXT NOT NULL,
    PRIMARY KEY (address, seq)
);
