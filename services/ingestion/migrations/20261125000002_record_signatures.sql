-- Departments' signatures over records as they submitted them (seed 002 art. 19: 谁产生、谁提供、
-- 谁负责, 可采用数字证书等安全手段). A signed record keeps the bytes the department signed, the
-- signature and the certificate it was checked against, so that anyone can check it again
-- without the platform. Apart from `records`: most records are not signed, and the bulk path
-- (`COPY` into `records`) stays as it is.
CREATE TABLE signers (
    certificate_sha256 BYTEA PRIMARY KEY,
    -- DER.
    certificate        BYTEA NOT NULL
);

-- A record's versions: its first submission and each correction the department signed.
CREATE TABLE record_signatures (
    record_id          UUID  NOT NULL REFERENCES records (record_id),
    version            INT   NOT NULL,
    certificate_sha256 BYTEA NOT NULL REFERENCES signers (certificate_sha256),
    -- The `RecordInput` as the department encoded and signed it.
    signed_input       BYTEA NOT NULL,
    signature          BYTEA NOT NULL,
    PRIMARY KEY (record_id, version)
);
