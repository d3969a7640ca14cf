-- Checks are the hottest write of the platform (one per CheckEntity). What a check answered is
-- written once and read back whole, never searched inside: json keeps it as sent, without the
-- conversion jsonb pays on every insert.
ALTER TABLE checks ALTER COLUMN answer TYPE json USING answer::json;
