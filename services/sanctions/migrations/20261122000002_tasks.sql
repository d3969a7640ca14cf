-- Departments' inboxes: sanction pushes, lifts, leads (and registration pushes, to come).

CREATE TABLE tasks (
    -- UUID v7: time-ordered, the inbox's page order.
    task_id       UUID PRIMARY KEY,
    -- sanctions.v1.TaskKind: 1 sanction, 2 lift, 3 registration, 4 lead.
    kind          SMALLINT    NOT NULL,
    -- sanctions.v1.TaskStatus: 1 open, 2 completed, 3 returned, 4 pooled.
    status        SMALLINT    NOT NULL,
    -- The department whose task it is; '' while pooled.
    department_id TEXT        NOT NULL,
    credit_code   TEXT        NOT NULL,
    measure_code  TEXT        NOT NULL DEFAULT '',
    summary       TEXT        NOT NULL,
    due_on        DATE,
    feedback      TEXT        NOT NULL DEFAULT '',
    risk_level    SMALLINT    NOT NULL DEFAULT 0,
    urgency       SMALLINT    NOT NULL DEFAULT 0,
    -- Who caused the task: `grading` for pushes and lifts, the pushing department for leads.
    created_by    TEXT        NOT NULL,
    -- Leads: the pusher's id of the lead, per subject and receiver (a retry creates nothing).
    source_key    TEXT,
    -- Sanction tasks whose measure stopped applying (a lift task was sent).
    lifted_at     TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One standing sanction per subject, measure and department: repeated grade events push nothing
-- new; after a lift, a new episode may push again.
CREATE UNIQUE INDEX tasks_standing_sanction ON tasks (credit_code, measure_code, department_id)
    WHERE kind = 1 AND lifted_at IS NULL;
CREATE UNIQUE INDEX tasks_by_source ON tasks (source_key) WHERE source_key IS NOT NULL;
CREATE INDEX tasks_inbox ON tasks (department_id, task_id);
CREATE INDEX tasks_open_due ON tasks (due_on) WHERE status = 1;
