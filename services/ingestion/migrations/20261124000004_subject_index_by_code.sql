-- A subject's records were indexed by (credit_code, decided_on DESC) so that `ListRecords` could
-- read them in page order. Every record of a bulk load goes into this index at its subject's
-- place, so on the ingest path it was the dearest of the table's three indexes: a million records
-- COPY'd into a table like this one took 5.4-5.7 s with it and 4.8 s with it keyed by the code
-- alone (docs/BENCHMARKS.md, fourteenth session). Keyed by the code alone, equal keys deduplicate
-- into one posting list per subject: 9.5 MB for those million records instead of 21 MB.
--
-- `ListRecords` now reads a subject's records through this index and sorts them by decision day:
-- a subject has tens to a few thousand records, which sort in well under a millisecond to a few.
-- Built before the old one is dropped, so a subject is never without an index; the build holds
-- writes to `records` back while it runs (seconds for millions of records).
CREATE INDEX records_by_subject_code ON records (credit_code);
DROP INDEX records_by_subject;
ALTER INDEX records_by_subject_code RENAME TO records_by_subject;
