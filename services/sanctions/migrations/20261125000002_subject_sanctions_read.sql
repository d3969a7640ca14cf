-- A subject's credit report shows its listings and the sanctions pushed against it, ended ones
-- too (GetSubjectSanctions); the partial indexes of standing ones do not find those.
CREATE INDEX listings_by_subject ON listings (credit_code, since);
CREATE INDEX tasks_sanctions_by_subject ON tasks (credit_code) WHERE kind = 1;
