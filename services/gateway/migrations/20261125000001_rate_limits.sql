-- Calls a second a department may make through one gateway replica; 0: the platform's default
-- (gateway.calls_per_second). See gateway.v1.Department.calls_per_second.
ALTER TABLE departments ADD COLUMN calls_per_second INT NOT NULL DEFAULT 0 CHECK (calls_per_second >= 0);
