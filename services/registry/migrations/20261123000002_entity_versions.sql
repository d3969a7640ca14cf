-- A registered subject's data changes by change registration (变更登记): a new name, address,
-- business scope, legal representative. UpdateEntity writes the new data into `entities` and keeps
-- here what each change replaced, field by field, with who changed it and why (有痕迹、可追溯).
-- `version` is the version replaced: 1 for the data as registered. An ID number is kept masked,
-- as `entities` keeps it besides its sealed form; nothing here holds a number in clear.
CREATE TABLE entity_versions (
    credit_code   TEXT COLLATE "C" NOT NULL REFERENCES entities (credit_code),
    version       INT         NOT NULL,
    -- [{"field": "address", "previous": "…"}, …], in the order of `registry.v1.Entity`.
    changes       JSONB       NOT NULL,
    reason        TEXT        NOT NULL,
    department_id TEXT        NOT NULL,
    changed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (credit_code, version)
);
