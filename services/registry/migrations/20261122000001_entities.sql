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
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Contains and similarity matches on names.
CREATE INDEX entities_name_trgm ON entities USING gin (name_normalised gin_trgm_ops);
-- Exact and prefix matches on names, region and industry prefixes (text_pattern_ops: LIKE 'x%' in any locale).
CREATE INDEX entities_name_prefix ON entities (name_normalised text_pattern_ops);
CREATE INDEX entities_region ON entities (region_code text_pattern_ops);
CREATE INDEX entities_industry ON entities (industry_code text_pattern_ops);

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
