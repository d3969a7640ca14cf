-- "Who looked at this subject in March": ListAuditEntries over a period. An entry's time follows
-- the chain only loosely: a replica's queue holds its entries through a Postgres outage, so a
-- segment written later may hold earlier times, and a segment's entries may span that outage. Each
-- segment therefore keeps the range of its times (`first_at` is the earliest, `last_at` the
-- latest), and a GiST index over that range finds the segments that overlap a period wherever they
-- lie in the chain. One index entry a segment: the writer's cost is a batch's, not an entry's.
ALTER TABLE audit_segments ADD COLUMN first_at TIMESTAMPTZ;
UPDATE audit_segments SET first_at = (SELECT min(entry_at) FROM unnest(at) AS entry_at);
ALTER TABLE audit_segments ALTER COLUMN first_at SET NOT NULL;
CREATE INDEX audit_segments_by_time ON audit_segments USING gist (tstzrange(first_at, last_at, '[]'));
