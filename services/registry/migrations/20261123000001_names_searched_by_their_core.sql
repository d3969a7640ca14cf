-- The trigram index held every trigram of every normalised name, and nearly every name ends in
-- 有限公司 or another company form: those trigrams cost each insert an index entry apiece (the
-- index was over half of Postgres's time in a bulk import) and narrow no search. The index now
-- holds only the core, the name less its tail of company forms (libs/domain name::core), which is
-- always a prefix of the normalised name: `name_core_length` characters of it. Search finds
-- candidates by the core and checks the full name (store.rs, `search`).
ALTER TABLE entities ADD COLUMN name_core_length SMALLINT;

-- Rows written before: the shortest non-empty prefix followed only by company forms. The service
-- strips forms one at a time from the end (name::core) and may keep a little more; either way the
-- core is a prefix followed only by characters of company forms, which is all search relies on.
UPDATE entities SET name_core_length = char_length(coalesce(
    substring(name_normalised FROM '^(.+?)(?:股份有限公司|有限公司|有限合伙|分公司|公司|集团|合作社|个体工商户|厂|店)*$'),
    name_normalised));

ALTER TABLE entities ALTER COLUMN name_core_length SET NOT NULL;

DROP INDEX entities_name_trgm;
CREATE INDEX entities_name_core_trgm ON entities
    USING gin ((left(name_normalised, name_core_length)) gin_trgm_ops) WITH (gin_pending_list_limit = 32768);
