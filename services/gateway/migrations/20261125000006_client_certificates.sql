-- A department may authenticate by a client certificate instead of a bearer token (ARCHITECTURE:
-- "client certificate or a bearer credential"; seed 002 art. 19, 可采用数字证书等安全手段). Such a
-- credential stores the certificate's SHA-256 (over its DER, as `openssl x509 -fingerprint -sha256`
-- prints it) in place of a secret's hash: the handshake proves the key, this row names the
-- department.
ALTER TABLE credentials ALTER COLUMN secret_sha256 DROP NOT NULL;
ALTER TABLE credentials ADD COLUMN certificate_sha256 BYTEA;
-- When the certificate stops being valid (its notAfter): shown to the administrator and watched,
-- so that a department is told to renew before its calls start failing in the handshake.
ALTER TABLE credentials ADD COLUMN certificate_not_after TIMESTAMPTZ;
ALTER TABLE credentials ADD CONSTRAINT credentials_a_secret_or_a_certificate
    CHECK ((secret_sha256 IS NULL) <> (certificate_sha256 IS NULL));
-- One department per certificate, revoked ones included: a revoked certificate is not registered
-- again (its holder gets a new one).
CREATE UNIQUE INDEX credentials_by_certificate ON credentials (certificate_sha256)
    WHERE certificate_sha256 IS NOT NULL;
