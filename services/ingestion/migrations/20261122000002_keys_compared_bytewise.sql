-- The record's keys — who reported it, under which id, about which subject — are compared on every
-- step of every index descent of every insert. Under a locale collation each comparison is a
-- locale-aware one; compared as bytes they are cheaper. Equality is the same under both, and for
-- these ASCII identifiers so is the order (department ids, source ids as departments send them,
-- credit codes).
ALTER TABLE records
    ALTER COLUMN department_id TYPE TEXT COLLATE "C",
    ALTER COLUMN source_record_id TYPE TEXT COLLATE "C",
    ALTER COLUMN credit_code TYPE TEXT COLLATE "C";
