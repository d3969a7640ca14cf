-- The audit log in segments. Every call through the gateway is an entry, and as a row each
-- (a tuple of ~200 bytes with a primary-key entry) Postgres spent, in the check benchmark, what
-- cost calls through the gateway 4-8% of their rate on the cores that serve them (docs/BENCHMARKS.md,
-- check). The writer already appends a batch at a time; each batch is now one row holding its
-- entries as arrays, in order, as the sanctions check log does (a million entries in psql: 0.09 s
-- against 2.1 s as rows, 8.5 MB against 212 MB).
--
-- The chain is unchanged: entry n's hash is SHA-256 over entry n - 1's hash and entry n
-- (services/gateway/src/audit.rs, `link`). A segment keeps the hash before its first entry and
-- the hash of its last, not every entry's: those are recomputed from the entries when read
-- (listing, verifying), so a changed entry no longer leads to the segment's last hash. Per-entry
-- hashes were 32 of the ~40 bytes an entry takes in a segment.
CREATE TABLE audit_segments (
    first_seq      BIGINT        PRIMARY KEY,
    last_seq       BIGINT        NOT NULL,
    -- The hash of entry first_seq - 1 (zeros before the first entry ever).
    previous_hash  BYTEA         NOT NULL,
    -- The hash of entry last_seq.
    last_hash      BYTEA         NOT NULL,
    -- The latest `at` of the segment, so that retention need not read the arrays.
    last_at        TIMESTAMPTZ   NOT NULL,
    at             TIMESTAMPTZ[] NOT NULL,
    department_ids TEXT[]        NOT NULL,
    methods        TEXT[]        NOT NULL,
    codes          SMALLINT[]    NOT NULL,
    subjects       TEXT[]        NOT NULL
);
-- Departments, methods and subjects repeat from entry to entry: lz4 compresses a segment's
-- arrays of them to a few bytes an entry, cheaply.
ALTER TABLE audit_segments
    ALTER at SET COMPRESSION lz4, ALTER department_ids SET COMPRESSION lz4, ALTER methods SET COMPRESSION lz4,
    ALTER codes SET COMPRESSION lz4, ALTER subjects SET COMPRESSION lz4;

-- The entries stored as rows become segments of up to 4,096, as the writer makes them.
INSERT INTO audit_segments (first_seq, last_seq, previous_hash, last_hash, last_at, at, department_ids, methods, codes,
                            subjects)
SELECT min(seq), max(seq), (array_agg(previous_hash ORDER BY seq))[1], (array_agg(hash ORDER BY seq DESC))[1],
       max(at), array_agg(at ORDER BY seq), array_agg(department_id ORDER BY seq), array_agg(method ORDER BY seq),
       array_agg(code ORDER BY seq), array_agg(subject ORDER BY seq)
FROM audit_log
GROUP BY (seq - 1) / 4096;

DROP TABLE audit_log;

-- The log as rows, for whoever reads it in SQL (without hashes: `ListAuditEntries` gives them).
CREATE VIEW audit_log AS
SELECT s.first_seq + e.n - 1 AS seq, e.at, e.department_id, e.method, e.code, e.subject
FROM audit_segments s
CROSS JOIN LATERAL unnest(s.at, s.department_ids, s.methods, s.codes, s.subjects)
    WITH ORDINALITY AS e(at, department_id, method, code, subject, n);
