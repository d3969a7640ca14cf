-- The event bus tables, created in every service's own schema (search_path is the schema).

-- Events waiting to be published, written in the same transaction as the change they announce.
CREATE TABLE outbox (
    seq          BIGSERIAL PRIMARY KEY,
    event_id     UUID        NOT NULL UNIQUE,
    event_type   TEXT        NOT NULL,
    credit_code  TEXT        NOT NULL DEFAULT '',
    envelope     BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);

-- The relay only ever looks for unpublished rows; keep that lookup small however long the table grows.
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

-- Events a consumer of this service has handled; the handler's writes and this row commit together,
-- so a redelivered event is recognised and skipped.
CREATE TABLE processed_events (
    consumer     TEXT        NOT NULL,
    event_id     UUID        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
