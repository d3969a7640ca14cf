-- Only subjects registered before the credit code (2015) carry an old registration number; a
-- unique constraint still put every other subject's NULL into its index, one more index insert per
-- subject of a bulk load. A unique index of the numbers that are present keeps the same rule (one
-- subject per number) and serves the lookup by number, which always names one.
ALTER TABLE entities DROP CONSTRAINT entities_registration_number_key;
CREATE UNIQUE INDEX entities_registration_number ON entities (registration_number) WHERE registration_number IS NOT NULL;
