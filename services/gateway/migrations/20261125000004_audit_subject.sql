-- The subject a call was about (its credit code), for the methods that name one: over-privileged
-- queries are an offence (seed 000 art. 21), and an audit asks who looked at a subject. Entries
-- written before have none, and their hashes do not cover it (services/gateway/src/audit.rs, `link`).
ALTER TABLE audit_log ADD COLUMN subject TEXT NOT NULL DEFAULT '';
