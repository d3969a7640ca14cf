-- Batch envelopes compressed after all, with lz4 instead of pglz (0002 left them plain because
-- pglz cost Postgres more than the batch's rows). lz4 costs a fraction of pglz, and a batch
-- envelope is repetitive (one department, one category, ids sharing their time prefix): a
-- recompute's outbox shrank from 307 MB to 50 MB, and ingestion writes about 100 bytes less log a
-- record, at the same rate (docs/BENCHMARKS.md, thirteenth session). A value is compressed as it
-- is written; older rows stay as they are and read the same.
-- A server built without lz4 refuses the method: the envelopes then stay plain, as before.
DO $$
BEGIN
    ALTER TABLE outbox ALTER COLUMN envelope SET COMPRESSION lz4;
    ALTER TABLE outbox ALTER COLUMN envelope SET STORAGE EXTENDED;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available: outbox envelopes stay uncompressed';
END
$$;
