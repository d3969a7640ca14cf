-- Retention of the audit log (gateway.audit_retention_days): entries older than it are removed from
-- the start of the chain, and the last one removed is remembered here, so that the walk
-- (xinyong-cli audit-verify, VerifyAuditLog) starts after it, expecting its hash as the first
-- remaining entry's previous hash. One row at most.
CREATE TABLE audit_log_base (
    singleton BOOLEAN     PRIMARY KEY DEFAULT true CHECK (singleton),
    -- The last entry removed and its hash.
    seq       BIGINT      NOT NULL,
    hash      BYTEA       NOT NULL,
    pruned_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
