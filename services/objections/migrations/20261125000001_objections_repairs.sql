-- Objections (异议) about records and applications for credit repair (信用修复). Enums are the
-- proto's numbers (objections.v1.ObjectionGround, ObjectionStatus, RepairStatus).

CREATE TABLE objections (
    objection_id        UUID        PRIMARY KEY,
    credit_code         TEXT COLLATE "C" NOT NULL,
    record_id           UUID        NOT NULL,
    -- The record's version when the objection was filed: upholding needs a later one.
    record_version      INT         NOT NULL,
    ground              SMALLINT    NOT NULL,
    statement           TEXT        NOT NULL,
    -- The filing department and its own id for the objection: the idempotency key.
    filed_by            TEXT        NOT NULL,
    source_objection_id TEXT        NOT NULL,
    -- The record's providing department, which answers.
    department_id       TEXT        NOT NULL,
    -- 1 open, 2 upheld, 3 rejected.
    status              SMALLINT    NOT NULL DEFAULT 1,
    answer_due_on       DATE        NOT NULL,
    answer              TEXT        NOT NULL DEFAULT '',
    answered_by         TEXT        NOT NULL DEFAULT '',
    filed_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    answered_at         TIMESTAMPTZ,
    UNIQUE (filed_by, source_objection_id)
);

-- Ids are UUIDv7, so each index lists in filing order.
CREATE INDEX objections_by_subject ON objections (credit_code, objection_id);
CREATE INDEX objections_by_answerer ON objections (department_id, objection_id);
CREATE INDEX objections_by_filer ON objections (filed_by, objection_id);
-- Whether a record is still disputed, and the overdue count.
CREATE INDEX objections_open ON objections (record_id) WHERE status = 1;

CREATE TABLE repairs (
    repair_id        UUID        PRIMARY KEY,
    credit_code      TEXT COLLATE "C" NOT NULL,
    record_id        UUID        NOT NULL,
    -- The record's providing department, which decides.
    department_id    TEXT        NOT NULL,
    commitment       TEXT        NOT NULL,
    evidence         TEXT[]      NOT NULL,
    applied_by       TEXT        NOT NULL,
    source_repair_id TEXT        NOT NULL,
    -- 1 pending, 2 approved, 3 refused.
    status           SMALLINT    NOT NULL DEFAULT 1,
    decision         TEXT        NOT NULL DEFAULT '',
    decided_by       TEXT        NOT NULL DEFAULT '',
    applied_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    decided_at       TIMESTAMPTZ,
    UNIQUE (applied_by, source_repair_id)
);

CREATE INDEX repairs_by_subject ON repairs (credit_code, repair_id);
CREATE INDEX repairs_by_decider ON repairs (department_id, repair_id);
CREATE INDEX repairs_by_applicant ON repairs (applied_by, repair_id);
-- One application under decision per record, and a record is repaired once.
CREATE UNIQUE INDEX repairs_one_pending ON repairs (record_id) WHERE status = 1;
CREATE UNIQUE INDEX repairs_one_approved ON repairs (record_id) WHERE status = 2;
