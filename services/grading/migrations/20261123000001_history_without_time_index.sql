-- grade_history_by_time (scheme, graded_at) had no reader: statistics count changes by the day a
-- grade is as of, and a subject's history walks grade_history_by_subject. Every grade change (two
-- million of them when a recompute grades a population or applies a new rule set) paid for a
-- write into it.
DROP INDEX grade_history_by_time;
