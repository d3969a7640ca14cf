-- Departments (成员单位) and their bearer credentials. Only hashes of the secrets are stored.

CREATE TABLE departments (
    department_id TEXT PRIMARY KEY,
    name          TEXT        NOT NULL,
    -- Permissions held (信息使用许可权, seed 000 art. 14); see gateway.v1.Department.permissions.
    permissions   TEXT[]      NOT NULL DEFAULT '{}',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE credentials (
    credential_id TEXT PRIMARY KEY,
    department_id TEXT        NOT NULL REFERENCES departments (department_id),
    -- SHA-256 of the secret part of the token; a stolen table does not give working tokens.
    secret_sha256 BYTEA       NOT NULL,
    issued_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at    TIMESTAMPTZ
);

CREATE INDEX credentials_by_department ON credentials (department_id, issued_at DESC);
