-- Notices before listing (seed 004 二(二)) and the listings they make effective. A serious-
-- dishonesty list record from ingestion generates a notice; the subject is on the joint-sanction
-- list only once the notice is recorded as served; withdrawing or repairing the record, or its
-- removal date, ends the listing.

CREATE TABLE notices (
    notice_id        UUID PRIMARY KEY,
    credit_code      TEXT        NOT NULL,
    -- common.v1.ListKind.
    list             SMALLINT    NOT NULL,
    -- The record that asks for the listing; one notice per record.
    record_id        TEXT        NOT NULL UNIQUE,
    basis            TEXT        NOT NULL,
    reason           TEXT        NOT NULL,
    measure_codes    TEXT[]      NOT NULL,
    objection_rights TEXT        NOT NULL,
    repair_guidance  TEXT        NOT NULL,
    served_on        DATE,
    served_method    TEXT        NOT NULL DEFAULT '',
    served_by        TEXT        NOT NULL DEFAULT '',
    -- The record was withdrawn or repaired before the notice was served: nothing to serve.
    cancelled        BOOLEAN     NOT NULL DEFAULT false,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX notices_unserved ON notices (created_at) WHERE served_on IS NULL AND NOT cancelled;

CREATE TABLE listings (
    record_id   TEXT PRIMARY KEY,
    credit_code TEXT     NOT NULL,
    list        SMALLINT NOT NULL,
    since       DATE     NOT NULL,
    -- The day the listing ended; NULL while it stands.
    until       DATE
);

CREATE INDEX listings_standing ON listings (credit_code) WHERE until IS NULL;

-- A notice task names its notice.
ALTER TABLE tasks ADD COLUMN notice_id UUID;
