-- Every record's category was checked by a foreign key, which Postgres runs as one query per
-- inserted row (with a lock on the category's row): 29% of Postgres's time in the ingest benchmark.
-- The service refuses a record whose category is not in this same catalogue before it writes, so
-- the key only guarded against a category going away under its records. That guard now sits on
-- the catalogue, where it costs nothing on the write path: a category that records use cannot be
-- deleted or renamed.
ALTER TABLE records DROP CONSTRAINT records_category_fkey;

CREATE FUNCTION refuse_removing_a_used_category() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM records WHERE category = OLD.code) THEN
        RAISE EXCEPTION 'category % is used by records: it cannot be deleted or renamed', OLD.code
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TRIGGER categories_delete_kept BEFORE DELETE ON categories
    FOR EACH ROW EXECUTE FUNCTION refuse_removing_a_used_category();
CREATE TRIGGER categories_rename_kept BEFORE UPDATE OF code ON categories
    FOR EACH ROW WHEN (OLD.code IS DISTINCT FROM NEW.code) EXECUTE FUNCTION refuse_removing_a_used_category();
