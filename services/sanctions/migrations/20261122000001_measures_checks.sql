-- The measures catalogue, the grades sanctions knows, and check on every handling (逢办必查).

-- A measure (奖惩措施目录): what it is, on what basis, who executes it, whom and which matters it
-- concerns, and which grades or lists trigger it. Enums are the proto's numbers (common.v1.Grade,
-- common.v1.ListKind, sanctions.v1.MeasureTarget, sanctions.v1.MatterType).
CREATE TABLE measures (
    code                  TEXT PRIMARY KEY,
    title                 TEXT        NOT NULL,
    legal_basis           TEXT        NOT NULL,
    -- The document and article it comes from.
    source                TEXT        NOT NULL,
    -- Department ids; empty: every department that handles one of its matters.
    executing_departments TEXT[]      NOT NULL DEFAULT '{}',
    grades                SMALLINT[]  NOT NULL DEFAULT '{}',
    lists                 SMALLINT[]  NOT NULL DEFAULT '{}',
    -- The scheme whose grades count.
    scheme                TEXT        NOT NULL DEFAULT 'public_credit',
    target                SMALLINT    NOT NULL,
    -- Empty: every matter.
    matter_types          SMALLINT[]  NOT NULL DEFAULT '{}',
    incentive             BOOLEAN     NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by            TEXT        NOT NULL DEFAULT 'platform'
);

-- The default catalogue. Seed 000 art. 11: A 优先, B 预警, C 限制, D 禁止 (grades 1..4 = A..D);
-- seed 004 二(五)3: measures against the organisations on the "blacklist" (list 2, the serious-
-- dishonesty list, and grade D) and against their legal representatives or principals
-- (target 2). Matters: 1 licensing, 2 filing, 3 procurement, 4 bidding, 5 subsidies, 6 land,
-- 7 state assets, 8 honours, 9 market entry, 10 practice. Executing departments are left empty
-- (every department handling the matter): a deployment names its own with UpsertMeasure.
INSERT INTO measures (code, title, legal_basis, source, grades, lists, target, matter_types, incentive) VALUES
    ('a-procurement-priority', '政府采购、政府投资项目招标、国有土地出让、公共资源交易中依法依约予以优先',
     '《石景山区企业信用监管和服务平台管理办法（试行）》第十一条第（一）项', '000 art. 11(1)', '{1}', '{}', 1, '{3,4,6,7}', true),
    ('a-subsidy-priority', '实施财政性资金项目支持、招商引资配套优惠等各类政策措施中给予优先',
     '《石景山区企业信用监管和服务平台管理办法（试行）》第十一条第（一）项', '000 art. 11(1)', '{1}', '{}', 1, '{5}', true),
    ('b-warning', '预警提示，依法开展协同监管，加强针对性的监督检查',
     '《石景山区企业信用监管和服务平台管理办法（试行）》第十一条第（二）项', '000 art. 11(2)', '{2}', '{}', 1, '{}', false),
    ('c-licensing-restrict', '问题整改到位前，依法限制其行政许可、注册备案、认证许可等申请',
     '《石景山区企业信用监管和服务平台管理办法（试行）》第十一条第（三）项', '000 art. 11(3)', '{3,4}', '{}', 1, '{1,2,9}', false),
    ('c-procurement-restrict', '依法限制参加政府采购、政府投资项目招标',
     '《石景山区企业信用监管和服务平台管理办法（试行）》第十一条第（三）项', '000 art. 11(3)', '{3,4}', '{}', 1, '{3,4}', false),
    ('c-property-restrict', '限制从事土地等不动产资源开发利用，参与国有企业资产、国有土地出让等国有产权交易',
     '《石景山区企业信用监管和服务平台管理办法（试行）》第十一条第（三）项', '000 art. 11(3)', '{3,4}', '{}', 1, '{6,7}', false),
    ('c-honours-restrict', '限制参加政府组织的各类表彰奖励活动',
     '《石景山区企业信用监管和服务平台管理办法（试行）》第十一条第（三）项', '000 art. 11(3)', '{3,4}', '{}', 1, '{8}', false),
    ('d-business-prohibit', '纳入“双随机”抽查特别名单，依法禁止其相关经营活动',
     '《石景山区企业信用监管和服务平台管理办法（试行）》第十一条第（四）项', '000 art. 11(4)', '{4}', '{}', 1, '{1,9,10}', false),
    ('bl-honours-prohibit', '禁止参与评优评先，已经授予的荣誉称号应按有关规定予以撤销',
     '失信联合惩戒措施（法人及其他组织）', '004 二(五)3', '{4}', '{2}', 1, '{8}', false),
    ('bl-approval-restrict', '限制新增项目审批、核准、用地和矿业权审批；未全面履行法定义务的，暂缓办理行政审批手续',
     '失信联合惩戒措施（法人及其他组织）', '004 二(五)3', '{4}', '{2}', 1, '{1,2,6}', false),
    ('bl-public-resources-restrict', '限制参与招标投标、政府采购、财政资金补贴、政策扶持等政府公共资源交易活动',
     '失信联合惩戒措施（法人及其他组织）', '004 二(五)3', '{4}', '{2}', 1, '{3,4,5}', false),
    ('bl-market-exit', '实施市场和行业禁入或者退出措施',
     '失信联合惩戒措施（法人及其他组织）', '004 二(五)3', '{4}', '{2}', 1, '{9}', false),
    ('bl-rep-no-office', '不得担任企业的法定代表人、董事、监事、经理及其他高级管理人员',
     '失信联合惩戒措施（自然人）', '004 二(五)3', '{4}', '{2}', 2, '{9}', false),
    ('bl-rep-funding-restrict', '限制政府资金支持',
     '失信联合惩戒措施（自然人）', '004 二(五)3', '{4}', '{2}', 2, '{5}', false),
    ('bl-rep-practice-suspend', '未全面履行法定义务的，暂缓办理职业（执业）资格审核和个人登记手续',
     '失信联合惩戒措施（自然人）', '004 二(五)3', '{4}', '{2}', 2, '{10}', false);

-- The current grade of every subject under every scheme, from grading's GradeChanged events.
CREATE TABLE subject_grades (
    credit_code         TEXT        NOT NULL,
    scheme              TEXT        NOT NULL,
    grade               SMALLINT    NOT NULL,
    rule_set_version    INT         NOT NULL,
    -- An internal scheme's grade is shown only with `internal_grades`.
    internal            BOOLEAN     NOT NULL DEFAULT false,
    -- Records behind the grade under an open objection (still counted, seed 000 art. 18).
    disputed_record_ids TEXT[]      NOT NULL DEFAULT '{}',
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (credit_code, scheme)
);

-- Every check: who asked, when, about whom and which matter, and what was answered.
CREATE TABLE checks (
    check_id       UUID PRIMARY KEY,
    credit_code    TEXT        NOT NULL,
    department_id  TEXT        NOT NULL,
    matter_type    SMALLINT    NOT NULL,
    -- {grades: [{scheme, grade, rule_set_version}], measures: [codes], disputed_record_ids: [...]}
    answer         JSONB       NOT NULL,
    checked_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A check that required measures must be reported on by this day (working days later).
    report_due_on  DATE,
    reported_at    TIMESTAMPTZ
);

CREATE INDEX checks_unreported ON checks (department_id, report_due_on) WHERE reported_at IS NULL;
CREATE INDEX checks_by_subject ON checks (credit_code, checked_at);

-- What was done with each measure of a check (反馈).
CREATE TABLE handlings (
    check_id     UUID        NOT NULL REFERENCES checks (check_id),
    measure_code TEXT        NOT NULL,
    applied      BOOLEAN     NOT NULL,
    reason       TEXT        NOT NULL DEFAULT '',
    reported_by  TEXT        NOT NULL,
    reported_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (check_id, measure_code)
);
