-- A subject's grade history is the grades it has had: the ones since replaced, in `grade_history`,
-- and the current one, in `grades`. Until now the current grade was written twice, once in each
-- table, so a subject's first grade cost a history row that said nothing `grades` did not. In a
-- recompute from no grades (two million first grades) those rows were a third of the time. Now the
-- current grade carries what its history row carried besides the grade (the grade it replaced and
-- why it changed), and moves into `grade_history` only when a new grade replaces it, taking its id
-- in the history's order then: the ids of one subject's grades still rise with time, since its
-- changes are made one after another under the subject's lock, and a first grade costs no call of
-- the sequence.
ALTER TABLE grades
    ADD COLUMN old_grade SMALLINT,
    ADD COLUMN cause     TEXT NOT NULL DEFAULT '';

-- Every write of a grade wrote its history row in the same statement, so a subject's newest history
-- row under a scheme is its current grade: it leaves the history, and its old grade and cause move
-- into the grade.
WITH newest AS (
    SELECT h.credit_code, h.scheme, max(h.id) AS id
    FROM grade_history h JOIN grades g USING (credit_code, scheme)
    GROUP BY h.credit_code, h.scheme
), moved AS (
    DELETE FROM grade_history h USING newest n
    WHERE h.credit_code = n.credit_code AND h.scheme = n.scheme AND h.id = n.id
    RETURNING h.credit_code, h.scheme, h.old_grade, h.cause
)
UPDATE grades g SET old_grade = m.old_grade, cause = m.cause
FROM moved m
WHERE g.credit_code = m.credit_code AND g.scheme = m.scheme;

-- Reasons are stored as the JSON text the service wrote, checked but not converted: no query looks
-- inside them, and building `jsonb` from text was a third of the cost of writing a grade (in psql,
-- 400,000 grades with two record ids each: 6.0-6.1 s as `jsonb`, 4.2-4.4 s as `json`).
ALTER TABLE grades ALTER COLUMN reasons TYPE json USING reasons::json;
ALTER TABLE grade_history ALTER COLUMN reasons TYPE json USING reasons::json;

-- The history as readers see it: every grade a subject has had under a scheme, the current one last
-- (its id the largest there is, until it is replaced). Conditions on the code and scheme reach both
-- tables' primary keys through the UNION ALL.
CREATE VIEW grade_changes AS
    SELECT id, credit_code, scheme, old_grade, grade, rule_set_version, reasons, as_of, graded_at, cause
    FROM grade_history
    UNION ALL
    SELECT 9223372036854775807::bigint, credit_code, scheme, old_grade, grade, rule_set_version, reasons, as_of,
        graded_at, cause
    FROM grades;
