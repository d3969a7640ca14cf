-- Listings kept by the record they rest on, not counted per subject. A count could not tell a
-- listing announced twice from two listings, so sanctions could not announce its standing listings
-- again to a lottery that missed them (deployed after sanctions' stream dropped its oldest entries,
-- or upgraded from a version that did not follow the lists). `ListingChanged` now names the record;
-- a listing that ended stays ended whatever arrives after.
CREATE TABLE listings (
    record_id   TEXT     PRIMARY KEY,
    credit_code TEXT     COLLATE "C" NOT NULL,
    -- common.v1.ListKind.
    list        SMALLINT NOT NULL,
    ended       BOOLEAN  NOT NULL
);
CREATE INDEX listings_standing ON listings (credit_code) WHERE NOT ended;

-- The counts cannot be turned into records. Sanctions announces every standing listing again on
-- its first listing sweep after the upgrade (its migration 20261125000003_listings_announced).
DROP TABLE listed_subjects;
