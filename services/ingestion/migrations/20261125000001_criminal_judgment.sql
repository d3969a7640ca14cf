-- Criminal judgments (刑事裁判, criminal records of the subject): a special credit report that
-- replaces "no violation" certificates must cover them (发改财金〔2025〕565号: administrative
-- penalties, summary ones included, administrative enforcement, the serious-dishonesty list and
-- criminal judgments). General dishonesty unless the court's department says serious; reported
-- by the end of the month after the judgment, as the other non-licensing categories.
INSERT INTO categories (code, title, required_fields, optional_fields, default_nature, deadline_working_days, needs_penalty_kind)
VALUES ('criminal_judgment', '刑事裁判', '{document_number,content,authority}', '{case_number,legal_basis,charge}', 4, 0, false)
ON CONFLICT (code) DO NOTHING;
