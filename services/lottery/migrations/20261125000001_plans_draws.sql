-- Random inspections (双随机、一公开): the directory and grades lottery draws from (its projection of
-- registry's and grading's events), inspectors, plans, draws with the inputs they used, and the
-- visits. Enums are the proto's numbers (common.v1.SubjectKind, EntityStatus, Grade).

CREATE TABLE subjects (
    credit_code   TEXT COLLATE "C" PRIMARY KEY,
    kind          SMALLINT NOT NULL DEFAULT 0,
    region_code   TEXT     NOT NULL DEFAULT '',
    industry_code TEXT     NOT NULL DEFAULT '',
    -- 1 operating: only operating subjects are inspected.
    status        SMALLINT NOT NULL DEFAULT 1
);

CREATE TABLE subject_grades (
    credit_code TEXT COLLATE "C" NOT NULL,
    scheme      TEXT COLLATE "C" NOT NULL,
    grade       SMALLINT NOT NULL,
    PRIMARY KEY (scheme, credit_code)
);

-- The inspector directory (执法检查人员名录库).
CREATE TABLE inspectors (
    inspector_id   TEXT PRIMARY KEY,
    name           TEXT        NOT NULL,
    department_id  TEXT        NOT NULL,
    qualifications TEXT[]      NOT NULL,
    recusals       TEXT[]      NOT NULL,
    active         BOOLEAN     NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX inspectors_by_department ON inspectors (department_id) WHERE active;

CREATE TABLE plans (
    plan_id              UUID PRIMARY KEY,
    title                TEXT        NOT NULL,
    departments          TEXT[]      NOT NULL,
    items                TEXT[]      NOT NULL,
    region_prefix        TEXT        NOT NULL,
    industry_prefix      TEXT        NOT NULL,
    kinds                SMALLINT[]  NOT NULL,
    -- [{"grade": 1, "percent": 5.0}, ...]
    ratios               JSONB       NOT NULL,
    default_percent      DOUBLE PRECISION NOT NULL,
    scheme               TEXT        NOT NULL,
    inspectors_per_visit INT         NOT NULL,
    starts_on            DATE        NOT NULL,
    ends_on              DATE        NOT NULL,
    created_by           TEXT        NOT NULL,
    source_plan_id       TEXT        NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (created_by, source_plan_id)
);

-- One draw per plan, with everything it used: VerifyDraw runs it again from these.
CREATE TABLE draws (
    draw_id       UUID PRIMARY KEY,
    plan_id       UUID        NOT NULL UNIQUE REFERENCES plans (plan_id),
    seed          TEXT        NOT NULL,
    inputs_digest TEXT        NOT NULL,
    population    BIGINT      NOT NULL,
    -- The population as drawn from: codes and their grades, in the same order.
    subjects      TEXT[]      NOT NULL,
    grades        SMALLINT[]  NOT NULL,
    -- The eligible directory: [{inspector_id, department_id, qualifications, recusals}].
    inspectors    JSONB       NOT NULL,
    drawn_by      TEXT        NOT NULL,
    drawn_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE assignments (
    assignment_id   UUID PRIMARY KEY,
    draw_id         UUID        NOT NULL REFERENCES draws (draw_id),
    plan_id         UUID        NOT NULL,
    credit_code     TEXT COLLATE "C" NOT NULL,
    inspector_ids   TEXT[]      NOT NULL,
    -- Other plans' visits to the same subject in an overlapping period: one visit (进一次门、查多项事).
    merged_plan_ids UUID[]      NOT NULL DEFAULT '{}',
    -- 1 pending, 2 done, 3 published.
    state           SMALLINT    NOT NULL DEFAULT 1,
    inspected_on    DATE,
    outcome         TEXT        NOT NULL DEFAULT '',
    problems_found  BOOLEAN     NOT NULL DEFAULT false,
    details         TEXT        NOT NULL DEFAULT '',
    recorded_by     TEXT        NOT NULL DEFAULT '',
    recorded_at     TIMESTAMPTZ,
    publish_due_on  DATE,
    published_at    TIMESTAMPTZ
);

CREATE INDEX assignments_by_plan ON assignments (plan_id, assignment_id);
CREATE INDEX assignments_by_inspector ON assignments USING gin (inspector_ids);
CREATE INDEX assignments_pending_by_subject ON assignments (credit_code) WHERE state = 1;
