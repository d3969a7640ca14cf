-- Every call through the gateway, in the order appended (ARCHITECTURE.md: a tamper-evident audit
-- log). `hash` is SHA-256 over `previous_hash` (the hash of entry seq - 1; zeros for the first)
-- and the entry (services/gateway/src/audit.rs, `link`): an entry changed, removed or inserted
-- afterwards breaks the chain there, which `xinyong-cli audit-verify` reports.
CREATE TABLE audit_log (
    seq           BIGINT      PRIMARY KEY,
    at            TIMESTAMPTZ NOT NULL,
    -- '' when the caller could not be authenticated.
    department_id TEXT        NOT NULL,
    -- package.Service/Method
    method        TEXT        NOT NULL,
    -- The gRPC status code the call was answered with.
    code          SMALLINT    NOT NULL,
    previous_hash BYTEA       NOT NULL,
    hash          BYTEA       NOT NULL
);
