-- Reports as issued: kept so that the department it was issued to can fetch it again and anyone
-- holding its number and digest can check it (VerifyReport). The body is the report's encoding as
-- sent, with its ID numbers masked whatever the caller's rights (a report is handed on).
CREATE TABLE reports (
    -- UUID v7: the report number carries it.
    report_id         UUID        PRIMARY KEY,
    credit_code       TEXT        NOT NULL,
    -- reports.v1.ReportKind.
    kind              SMALLINT    NOT NULL,
    issued_to         TEXT        NOT NULL,
    issued_at         TIMESTAMPTZ NOT NULL,
    -- The caller's id of the request: the same id again returns this report.
    source_request_id TEXT,
    -- SHA-256 of `body` encoded with its digest field empty.
    digest            BYTEA       NOT NULL,
    body              BYTEA       NOT NULL
);

CREATE UNIQUE INDEX reports_by_source ON reports (issued_to, source_request_id) WHERE source_request_id IS NOT NULL;
-- ListReports: a department's reports newest first, all or about one subject.
CREATE INDEX reports_issued_to ON reports (issued_to, report_id);
CREATE INDEX reports_issued_to_subject ON reports (issued_to, credit_code, report_id);
