-- Versioned rule sets (schemes). A published version is never changed or deleted: past grades
-- keep pointing at the version that produced them.

CREATE TABLE rule_sets (
    scheme       TEXT        NOT NULL,
    version      INT         NOT NULL,
    document     TEXT        NOT NULL,
    -- SHA-256 of the document: publishing the same document again creates no version.
    digest       BYTEA       NOT NULL,
    internal     BOOLEAN     NOT NULL,
    title        TEXT        NOT NULL,
    published_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_by TEXT        NOT NULL,
    PRIMARY KEY (scheme, version)
);
