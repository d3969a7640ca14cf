-- A bulk load announces a batch of thousands of subjects or records in one envelope of a few
-- hundred kilobytes. Compressing it (pglz, on by default for a large value) cost Postgres more CPU
-- than the batch's rows themselves and bought nothing: the row lives until the relay publishes it,
-- and the relay then pays again to decompress it. Stored out of line and uncompressed instead.
ALTER TABLE outbox ALTER COLUMN envelope SET STORAGE EXTERNAL;
