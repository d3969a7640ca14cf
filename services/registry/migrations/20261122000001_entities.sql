-- Subjects by unified social credit code, and their status history.

CREATE TABLE entities (
    credit_code              TEXT PRIMARY KEY,
    name                     TEXT        NOT NULL,
    -- Search form of the name (libs/domain name::normalise).
    name_normalised          TEXT        NOT NULL,
    -- common.v1.SubjectKind.
    kind                     SMALLINT    NOT NULL,
    registration_number      TEXT UNIQUE,
    region_code              TEXT        NOT NULL,
    industry_code            TEXT        NOT NULL,
    business_scope           TEXT        NOT NULL DEFAULT '',
    established_on           DATE        NOT NULL,
    -- In 10,000 yuan (万元).
    registered_capital       NUMERIC(18, 2),
    address                  TEXT        NOT NULL DEFAULT '',
    representative_name      TEXT        NOT NULL DEFAULT '',
    -- The ID number as anyone may see it: 110105********1234.
    representative_id_masked TEXT        NOT NULL DEFAULT '',
    -- ChaCha20-Poly1305 of the ID number under registry.personal_data_key (nonce ‖ ciphertext):
    -- no index, log or dump of this table shows it in clear.
    representative_id_sealed BYTEA,
    -- Keyed hash of the ID number, to compare a re-registration without decrypting.
    representative_id_digest BYTEA,
    -- common.v1.EntityStatus.
    status                   SMALLINT    NOT NULL DEFAULT 1,
    status_since             DATE        NOT NULL,
    -- The status the subject was registered (or imported) with, and who registered it: the first
    -- entry of its history, kept here so that a bulk load writes one row per subject.
    registered_status        SMALLINT    NOT NULL,
    registered_status_since  DATE        NOT NULL,
    registered_by            TEXT        NOT NULL,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every name match: equality, prefix and contains (LIKE) and similarity (%) all use the trigram
-- index (equality since PostgreSQL 14), so no second index on the name slows bulk loads.
-- A 32 MB pending list lets bulk loads append trigrams cheaply; autovacuum merges them later.
CREATE INDEX entities_name_trgm ON entities USING gin (name_normalised gin_trgm_ops) WITH (gin_pending_list_limit = 32768);
-- No index on region or industry: the directory stream walks the primary key in code order and
-- filters as it goes, and name searches narrow by the trigram index first. Each index here is paid
-- for by every registration and every bulk load.

-- Every status change after registration.
CREATE TABLE entity_status_history (
    id            BIGSERIAL PRIMARY KEY,
    credit_code   TEXT        NOT NULL REFERENCES entities (credit_code),
    status        SMALLINT    NOT NULL,
    effective_on  DATE        NOT NULL,
    reason        TEXT        NOT NULL,
    department_id TEXT        NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX entity_status_history_by_code ON entity_status_history (credit_code, id);
