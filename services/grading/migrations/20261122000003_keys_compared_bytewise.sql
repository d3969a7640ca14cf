-- A recompute descends these tables' indexes millions of times by credit code and scheme; under the
-- database's locale collation every step is a locale-aware comparison (a tenth of Postgres's time
-- in the recompute benchmark went to comparing keys). Compared as bytes instead: equality is the
-- same, and so is the order of these ASCII keys.
ALTER TABLE subjects ALTER COLUMN credit_code TYPE TEXT COLLATE "C";
ALTER TABLE record_facts ALTER COLUMN credit_code TYPE TEXT COLLATE "C";
ALTER TABLE grades
    ALTER COLUMN credit_code TYPE TEXT COLLATE "C",
    ALTER COLUMN scheme TYPE TEXT COLLATE "C";
ALTER TABLE grade_history
    ALTER COLUMN credit_code TYPE TEXT COLLATE "C",
    ALTER COLUMN scheme TYPE TEXT COLLATE "C";
