-- `ListingChanged` now names the record a listing rests on, so that a consumer keeps listings by
-- record (lottery: one subject may stand on a list by several records). Events sent before did not,
-- and a consumer deployed after sanctions' stream dropped its oldest entries never saw them: the
-- listing sweep announces every standing listing again, with its record, when this table has no
-- row (services/sanctions/src/listings.rs, `announce_if_asked`). It has none after this migration,
-- so the first sweep after the upgrade announces; an operator deletes the row to ask again.
CREATE TABLE listings_announced (
    singleton    BOOLEAN     PRIMARY KEY DEFAULT true CHECK (singleton),
    -- How many standing listings were announced.
    listings     BIGINT      NOT NULL,
    announced_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
