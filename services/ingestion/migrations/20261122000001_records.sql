-- The record catalogue and the records.

-- A category of credit information (seeds 001 二(1), 004 二(一)): its fields, default nature and
-- reporting deadline. Data: a deployment adds categories with an INSERT, no release needed.
CREATE TABLE categories (
    code                  TEXT PRIMARY KEY,
    title                 TEXT     NOT NULL,
    -- Field names; `document_number` means the record's top-level decision document number.
    required_fields       TEXT[]   NOT NULL DEFAULT '{}',
    optional_fields       TEXT[]   NOT NULL DEFAULT '{}',
    -- common.v1.Nature used when a submission leaves it unspecified.
    default_nature        SMALLINT NOT NULL,
    -- Reporting deadline in working days after the decision (0: by the end of the following month).
    deadline_working_days INT      NOT NULL DEFAULT 0,
    -- Penalties need their kind (grading reads it).
    needs_penalty_kind    BOOLEAN  NOT NULL DEFAULT false
);

-- 双公示 fields of licences and penalties: document number, content, legal basis, decision date
-- (the record's decided_on), valid until, deciding authority. Natures: 1 positive, 2 neutral,
-- 3 minor, 4 general dishonesty, 5 serious dishonesty. Deadline 7 is seed 002 art. 5 / 004;
-- ingestion.report_deadline_working_days replaces it per deployment (000 art. 8 allows 10).
INSERT INTO categories (code, title, required_fields, optional_fields, default_nature, deadline_working_days, needs_penalty_kind) VALUES
    ('licence', '行政许可', '{document_number,content,legal_basis,authority}', '{valid_until,licence_type,licence_number}', 2, 7, false),
    ('penalty', '行政处罚', '{document_number,content,legal_basis,authority}', '{valid_until,amount_yuan,confiscated_yuan,violation}', 4, 7, true),
    ('enforcement', '行政强制', '{document_number,content,legal_basis,authority}', '{valid_until}', 4, 0, false),
    ('confirmation', '行政确认', '{content,authority}', '{document_number,legal_basis,valid_until}', 2, 0, false),
    ('reward', '行政奖励', '{content,authority}', '{document_number,legal_basis,valid_until}', 1, 0, false),
    ('payment', '行政给付', '{content,authority}', '{document_number,legal_basis,amount_yuan}', 2, 0, false),
    ('inspection_result', '检查抽查结果', '{content,authority}', '{document_number,plan_id,outcome}', 2, 0, false),
    ('abnormal_operation_list', '经营异常名录', '{content,authority}', '{document_number,legal_basis,reason,removed_on}', 4, 0, false),
    ('serious_dishonesty_list', '严重失信主体名单', '{content,authority,legal_basis}', '{document_number,removed_on}', 5, 0, false),
    ('dishonest_judgment_debtor', '失信被执行人', '{content,authority}', '{document_number,case_number,amount_yuan,removed_on}', 5, 0, false),
    ('tax_arrears', '欠税', '{content,authority}', '{document_number,amount_yuan,tax_type}', 4, 0, false),
    ('utility_arrears', '欠缴水电气费', '{content,authority}', '{document_number,amount_yuan,utility}', 4, 0, false),
    ('commitment_kept', '信用承诺履约', '{content,authority}', '{document_number,commitment_kind}', 1, 0, false),
    ('commitment_broken', '信用承诺未履约', '{content,authority}', '{document_number,commitment_kind}', 4, 0, false),
    ('self_declared', '自主申报', '{content}', '{document_number,valid_until}', 2, 0, false);

CREATE TABLE records (
    record_id                    UUID PRIMARY KEY,
    department_id                TEXT        NOT NULL,
    source_record_id             TEXT        NOT NULL,
    credit_code                  TEXT        NOT NULL,
    category                     TEXT        NOT NULL REFERENCES categories (code),
    nature                       SMALLINT    NOT NULL,
    decided_on                   DATE        NOT NULL,
    document_number              TEXT        NOT NULL DEFAULT '',
    fields                       JSONB       NOT NULL DEFAULT '{}',
    text                         TEXT        NOT NULL DEFAULT '',
    penalty_kind                 SMALLINT    NOT NULL DEFAULT 0,
    -- SHA-256 of the submission as the department sent it: the same payload again is a duplicate.
    payload_digest               BYTEA       NOT NULL,
    version                      INT         NOT NULL DEFAULT 1,
    -- ingestion.v1.RecordState.
    state                        SMALLINT    NOT NULL DEFAULT 1,
    disputed                     BOOLEAN     NOT NULL DEFAULT false,
    -- The disclosure rule the record was judged under (libs/domain disclosure), and its window.
    disclosure_rule              TEXT        NOT NULL,
    published                    BOOLEAN     NOT NULL,
    disclosure_until             DATE,
    repair_allowed_from          DATE,
    -- Reporting timeliness: the deadline, and the delay in working days from decision to receipt.
    report_due_on                DATE        NOT NULL,
    reporting_delay_working_days INT         NOT NULL,
    received_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- What made the current version (submitted, corrected, withdrawn), who, and why.
    change                       TEXT        NOT NULL DEFAULT 'submitted',
    changed_by                   TEXT        NOT NULL,
    change_reason                TEXT        NOT NULL DEFAULT '',
    UNIQUE (department_id, source_record_id)
);

CREATE INDEX records_by_subject ON records (credit_code, decided_on DESC);
-- Per-department questions (timeliness) use the unique (department_id, source_record_id) index.

-- Superseded versions (有痕迹、可追溯, seed 000 art. 19): the current version lives in `records`;
-- each correction or withdrawal first copies the version it replaces here.
CREATE TABLE record_versions (
    record_id        UUID        NOT NULL REFERENCES records (record_id),
    version          INT         NOT NULL,
    -- What made this version: submitted, corrected, withdrawn.
    change           TEXT        NOT NULL,
    changed_by       TEXT        NOT NULL,
    changed_at       TIMESTAMPTZ NOT NULL,
    reason           TEXT        NOT NULL,
    snapshot         JSONB       NOT NULL,
    PRIMARY KEY (record_id, version)
);
