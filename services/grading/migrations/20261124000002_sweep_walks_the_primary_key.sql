-- The daily sweep is the only reader of `grades_due`, and every grade with a record in it had an
-- entry there: a recompute from no grades wrote two million of them, and a regrade that moved
-- `review_on` could not stay on its page (a HOT update needs no indexed column to change). The
-- sweep now walks the primary key in code order and filters on `review_on`: once a day, one pass
-- over the grades (about a second per two million), instead of an index entry per grade written.
DROP INDEX grades_due;
