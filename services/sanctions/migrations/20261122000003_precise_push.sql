-- Precise push of registrations (双告知, seed 002 art. 7, 000 art. 16–17): the approval items a
-- business scope can name, and the department that approves each. Data: a deployment replaces
-- the generic department ids below with its own (INSERT/UPDATE, no release needed).
CREATE TABLE approval_items (
    keyword       TEXT PRIMARY KEY,
    item          TEXT NOT NULL,
    department_id TEXT NOT NULL
);

INSERT INTO approval_items (keyword, item, department_id) VALUES
    ('食品经营', '食品经营许可', 'market-regulation'),
    ('食品生产', '食品生产许可', 'market-regulation'),
    ('药品', '药品经营许可', 'medical-products'),
    ('医疗器械', '医疗器械经营许可（备案）', 'medical-products'),
    ('危险化学品', '危险化学品经营许可', 'emergency-management'),
    ('道路运输', '道路运输经营许可', 'transport'),
    ('道路货物运输', '道路运输经营许可', 'transport'),
    ('烟草', '烟草专卖零售许可', 'tobacco-monopoly'),
    ('出版物', '出版物经营许可', 'press-publication'),
    ('娱乐场所', '娱乐场所经营许可', 'culture-tourism'),
    ('旅行社', '旅行社业务经营许可', 'culture-tourism'),
    ('建筑施工', '建筑业企业资质、安全生产许可', 'housing-construction'),
    ('建设工程', '建筑业企业资质', 'housing-construction'),
    ('医疗机构', '医疗机构执业许可', 'health'),
    ('餐饮服务', '食品经营许可', 'market-regulation'),
    ('人力资源服务', '人力资源服务许可', 'human-resources'),
    ('劳务派遣', '劳务派遣经营许可', 'human-resources'),
    ('成品油', '成品油零售经营资格', 'commerce'),
    ('互联网信息服务', '互联网信息服务增值电信业务经营许可', 'communications');
