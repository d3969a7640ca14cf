-- Grades and what they are computed from. Grading keeps its own projection of the subjects and
-- record facts it learns from registry and ingestion events, so a grade (and a full recompute)
-- never has to call another service.

-- Subjects as registry announced them. A record event can arrive before the registration event
-- (they travel on different streams): the row is then created with what is known and completed
-- when the registration arrives.
CREATE TABLE subjects (
    credit_code   TEXT PRIMARY KEY,
    -- common.v1.SubjectKind, 0 until registry's event arrives.
    kind          SMALLINT NOT NULL DEFAULT 0,
    region_code   TEXT     NOT NULL DEFAULT '',
    industry_code TEXT     NOT NULL DEFAULT '',
    -- common.v1.EntityStatus; 1 operating.
    status        SMALLINT NOT NULL DEFAULT 1,
    registered    BOOLEAN  NOT NULL DEFAULT false
);

-- The facts of the current version of every record about a subject.
CREATE TABLE record_facts (
    record_id        UUID PRIMARY KEY,
    credit_code      TEXT     NOT NULL,
    -- The reporting department, for the records-by-department statistics.
    department_id    TEXT     NOT NULL,
    category         TEXT     NOT NULL,
    -- common.v1.Nature.
    nature           SMALLINT NOT NULL,
    -- ingestion.v1.PenaltyKind.
    penalty_kind     SMALLINT NOT NULL DEFAULT 0,
    decided_on       DATE     NOT NULL,
    -- Withdrawn or repaired records never count.
    active           BOOLEAN  NOT NULL DEFAULT true,
    disputed         BOOLEAN  NOT NULL DEFAULT false,
    published        BOOLEAN  NOT NULL DEFAULT true,
    disclosure_until DATE,
    removed_on       DATE,
    -- The record's version these facts belong to: an older event never overwrites a newer one.
    version          INT      NOT NULL
);

CREATE INDEX record_facts_by_subject ON record_facts (credit_code);

-- The current grade of a subject under each scheme.
CREATE TABLE grades (
    credit_code      TEXT        NOT NULL,
    scheme           TEXT        NOT NULL,
    -- common.v1.Grade.
    grade            SMALLINT    NOT NULL,
    rule_set_version INT         NOT NULL,
    -- [{code, record_ids, disputed_record_ids}]; the texts are in the rule set of that version
    reasons          JSONB       NOT NULL,
    -- A digest of grade, version and reasons: a regrade compares this, not the reasons, to tell
    -- whether anything changed (a recompute reads a million of these).
    digest           BIGINT      NOT NULL,
    as_of            DATE        NOT NULL,
    graded_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The first day time alone may change the grade (a record leaves the window or its disclosure
    -- period); the daily sweep regrades the subjects whose day has come. NULL: nothing pending.
    review_on        DATE,
    PRIMARY KEY (credit_code, scheme)
);

CREATE INDEX grades_due ON grades (review_on) WHERE review_on IS NOT NULL;

-- Every grade a subject had, appended on each change; never rewritten (a new rule-set version
-- produces new rows, it does not touch these).
CREATE TABLE grade_history (
    id               BIGSERIAL PRIMARY KEY,
    credit_code      TEXT        NOT NULL,
    scheme           TEXT        NOT NULL,
    -- NULL for a first grade.
    old_grade        SMALLINT,
    grade            SMALLINT    NOT NULL,
    rule_set_version INT         NOT NULL,
    reasons          JSONB       NOT NULL,
    as_of            DATE        NOT NULL,
    graded_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- What moved the grade: an event type, `sweep` or `recompute`.
    cause            TEXT        NOT NULL
);

CREATE INDEX grade_history_by_subject ON grade_history (credit_code, scheme, id DESC);
CREATE INDEX grade_history_by_time ON grade_history (scheme, graded_at);

-- The days the sweep has completed, so a restart knows what it still owes.
CREATE TABLE sweeps (
    day          DATE PRIMARY KEY,
    regraded     BIGINT      NOT NULL,
    changed      BIGINT      NOT NULL,
    finished_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
