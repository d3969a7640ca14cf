-- Every CheckEntity writes a check, and at full load Postgres spent half of its time on those
-- writes in the checks' three indexes. Two of them were more than their readers need:
-- - checks_by_subject (credit_code, checked_at) had no reader: no call lists a subject's checks.
--   An audit that wants them by subject can add it back; until then it is a random-order insert
--   into a text index on every check.
-- - checks_unreported (department_id, report_due_on) served GetOverdue, which counts overdue
--   checks for one department or for all of them; the date alone finds them (the overdue ones are
--   few), and checks that owe no report (no measure applied) never need to be in it.
DROP INDEX checks_by_subject;
DROP INDEX checks_unreported;
CREATE INDEX checks_owing_report ON checks (report_due_on) WHERE reported_at IS NULL AND report_due_on IS NOT NULL;
