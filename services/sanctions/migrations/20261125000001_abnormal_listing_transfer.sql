-- An abnormal-operation listing (经营异常名录) that stands three years moves the subject to the
-- serious-violation list (严重违法失信名单), with a warning in its last 60 days (DOMAIN.md, "Lists
-- with timers"). The sweep that makes those tasks needs to know who decided the listing and which
-- record a task is about.

-- The department that decided the listing; '' for listings stored before this column, whose
-- warnings go to the registration authority.
ALTER TABLE listings ADD COLUMN department_id TEXT NOT NULL DEFAULT '';

-- What the sweep walks: standing abnormal-operation listings by the day they began.
CREATE INDEX listings_abnormal_standing ON listings (since) WHERE until IS NULL AND list = 1;

-- The listing record a warning or transfer task is about; its end or the serious listing that
-- follows it closes the task.
ALTER TABLE tasks ADD COLUMN record_id TEXT;
CREATE INDEX tasks_open_by_record ON tasks (credit_code, record_id) WHERE status = 1 AND record_id IS NOT NULL;
