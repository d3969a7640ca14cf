//! Normalising subject names for search, so that 联想（北京）有限公司, 联想(北京)有限责任公司 and
//! 聯想 （北京） 有限公司 are the same name.
//!
//! Steps: full-width forms to half-width; common traditional characters of company names to
//! simplified (a small table: cheap, and enough for names, not a converter for prose); Latin
//! letters to lower case; spaces and punctuation removed; company-form suffix variants unified.

/// Company-form variants and the form they are unified to; longest first.
const SUFFIX_VARIANTS: &[(&str, &str)] = &[
    ("股份有限责任公司", "股份有限公司"),
    ("有限责任公司", "有限公司"),
    ("有限公司分公司", "有限公司分公司"),
    ("(有限合伙)", "有限合伙"),
];

/// Company-form suffixes, removed to get the distinctive part of a name (its "core").
const FORM_SUFFIXES: &[&str] =
    &["股份有限公司", "有限公司", "有限合伙", "分公司", "公司", "集团", "合作社", "个体工商户", "厂", "店"];

/// Traditional → simplified for characters common in Chinese company names.
const TRADITIONAL: &[(char, char)] = &[
    ('國', '国'),
    ('際', '际'),
    ('貿', '贸'),
    ('業', '业'),
    ('東', '东'),
    ('華', '华'),
    ('電', '电'),
    ('機', '机'),
    ('氣', '气'),
    ('築', '筑'),
    ('發', '发'),
    ('開', '开'),
    ('術', '术'),
    ('設', '设'),
    ('計', '计'),
    ('經', '经'),
    ('營', '营'),
    ('銷', '销'),
    ('廣', '广'),
    ('場', '场'),
    ('體', '体'),
    ('農', '农'),
    ('產', '产'),
    ('醫', '医'),
    ('藥', '药'),
    ('療', '疗'),
    ('網', '网'),
    ('絡', '络'),
    ('資', '资'),
    ('訊', '讯'),
    ('實', '实'),
    ('興', '兴'),
    ('區', '区'),
    ('縣', '县'),
    ('鄉', '乡'),
    ('鎮', '镇'),
    ('門', '门'),
    ('車', '车'),
    ('運', '运'),
    ('輸', '输'),
    ('質', '质'),
    ('環', '环'),
    ('衛', '卫'),
    ('飲', '饮'),
    ('館', '馆'),
    ('書', '书'),
    ('樂', '乐'),
    ('藝', '艺'),
    ('廳', '厅'),
    ('協', '协'),
    ('會', '会'),
    ('團', '团'),
    ('隊', '队'),
    ('務', '务'),
    ('貨', '货'),
    ('進', '进'),
    ('對', '对'),
    ('專', '专'),
    ('聯', '联'),
    ('長', '长'),
    ('馬', '马'),
    ('龍', '龙'),
    ('鳳', '凤'),
    ('陽', '阳'),
    ('灣', '湾'),
    ('億', '亿'),
    ('萬', '万'),
    ('與', '与'),
    ('達', '达'),
    ('順', '顺'),
    ('豐', '丰'),
    ('匯', '汇'),
    ('銀', '银'),
    ('證', '证'),
    ('險', '险'),
    ('壽', '寿'),
    ('財', '财'),
    ('礦', '矿'),
    ('鋼', '钢'),
    ('鐵', '铁'),
    ('鋁', '铝'),
    ('煉', '炼'),
    ('紡', '纺'),
    ('織', '织'),
    ('裝', '装'),
    ('飾', '饰'),
    ('輕', '轻'),
    ('廠', '厂'),
    ('測', '测'),
    ('檢', '检'),
    ('驗', '验'),
    ('認', '认'),
    ('諮', '咨'),
    ('詢', '询'),
    ('顧', '顾'),
    ('問', '问'),
    ('員', '员'),
    ('學', '学'),
    ('師', '师'),
    ('園', '园'),
    ('錦', '锦'),
    ('綠', '绿'),
    ('潔', '洁'),
    ('鮮', '鲜'),
    ('魚', '鱼'),
    ('雞', '鸡'),
    ('麵', '面'),
    ('點', '点'),
    ('廚', '厨'),
    ('燈', '灯'),
    ('熱', '热'),
    ('溫', '温'),
    ('線', '线'),
    ('纜', '缆'),
    ('號', '号'),
    ('碼', '码'),
    ('購', '购'),
    ('買', '买'),
    ('賣', '卖'),
    ('價', '价'),
    ('優', '优'),
    ('創', '创'),
    ('維', '维'),
    ('護', '护'),
    ('雲', '云'),
    ('數', '数'),
    ('據', '据'),
    ('陸', '陆'),
    ('慶', '庆'),
    ('蘇', '苏'),
    ('遼', '辽'),
    ('寧', '宁'),
    ('廈', '厦'),
    ('滬', '沪'),
    ('嶺', '岭'),
    ('聖', '圣'),
    ('壹', '壹'),
    ('貳', '贰'),
    ('傳', '传'),
    ('媒', '媒'),
    ('視', '视'),
    ('聽', '听'),
    ('責', '责'),
    ('貴', '贵'),
    ('鄭', '郑'),
    ('劉', '刘'),
    ('陳', '陈'),
    ('張', '张'),
    ('楊', '杨'),
    ('黃', '黄'),
    ('趙', '赵'),
    ('吳', '吴'),
    ('孫', '孙'),
    ('誠', '诚'),
    ('鑫', '鑫'),
    ('禮', '礼'),
    ('儀', '仪'),
    ('戶', '户'),
    ('個', '个'),
    ('勞', '劳'),
    ('動', '动'),
    ('關', '关'),
    ('係', '系'),
];

/// [`TRADITIONAL`] sorted for binary search: a linear scan per character was most of the cost of
/// normalising a name, which every registration and every import row pays.
static TRADITIONAL_SORTED: std::sync::LazyLock<Vec<(char, char)>> = std::sync::LazyLock::new(|| {
    let mut sorted = TRADITIONAL.to_vec();
    sorted.sort_unstable();
    sorted
});

fn simplified(character: char) -> char {
    // Every traditional character of the table is a CJK ideograph.
    if character < '\u{4E00}' {
        return character;
    }
    match TRADITIONAL_SORTED.binary_search_by_key(&character, |(traditional, _)| *traditional) {
        Ok(index) => TRADITIONAL_SORTED[index].1,
        Err(_) => character,
    }
}

/// Full-width ASCII variants (U+FF01–U+FF5E) and the ideographic space to their ASCII forms.
fn half_width(character: char) -> char {
    match character {
        '\u{3000}' => ' ',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(character as u32 - 0xFEE0).unwrap_or(character),
        _ => character,
    }
}

fn is_noise(character: char) -> bool {
    character.is_whitespace()
        || (character.is_ascii_punctuation() && character != '(' && character != ')')
        || matches!(
            character,
            '·' | '・'
                | '、'
                | '，'
                | '。'
                | '“'
                | '”'
                | '‘'
                | '’'
                | '《'
                | '》'
                | '【'
                | '】'
                | '〔'
                | '〕'
                | '—'
                | '…'
        )
}

/// The normalised form of a name, used for equality, prefix and contains matches.
pub fn normalise(name: &str) -> String {
    let mut normalised: String = name
        .chars()
        .map(half_width)
        .map(simplified)
        .map(|character| character.to_ascii_lowercase())
        .filter(|character| !is_noise(*character))
        .collect();
    for (variant, unified) in SUFFIX_VARIANTS {
        if let Some(stem) = normalised.strip_suffix(variant) {
            normalised = format!("{stem}{unified}");
            break;
        }
    }
    // Brackets are kept for reading, but matching ignores them: 联想(北京) = 联想北京.
    normalised.retain(|character| character != '(' && character != ')');
    normalised
}

/// The distinctive part of a normalised name: company-form suffixes removed (联想北京有限公司 → 联想北京).
pub fn core(normalised: &str) -> &str {
    let mut core = normalised;
    loop {
        let stripped =
            FORM_SUFFIXES.iter().find_map(|suffix| core.strip_suffix(suffix).filter(|rest| !rest.is_empty()));
        match stripped {
            Some(rest) => core = rest,
            None => return core,
        }
    }
}

/// The length in characters of a normalised name's core, which is always a prefix of it: the
/// registry's trigram index holds only `left(name_normalised, core_length)`. Every name shares
/// the trigrams of 有限公司 and the like, which cost every insert an index entry each and narrow
/// no search.
pub fn core_length(normalised: &str) -> usize {
    core(normalised).chars().count()
}

/// The part of a normalised search text that the core of every name containing the text contains
/// too: the text without its trailing characters that company forms are made of. A name's core is
/// the name less a tail of such characters only, so whatever of the text ends before that tail
/// lies inside the core ("保险集团" → "保险" for 中国平安保险集团股份有限公司). Empty when the
/// text is all form characters: then the core narrows nothing.
pub fn core_of_contained(text: &str) -> &str {
    text.trim_end_matches(is_form_character)
}

fn is_form_character(character: char) -> bool {
    FORM_SUFFIXES.iter().any(|suffix| suffix.contains(character))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn variants_of_one_name_normalise_alike() {
        let expected = normalise("联想(北京)有限公司");
        assert_eq!(expected, "联想北京有限公司");
        for variant in [
            "联想（北京）有限公司",
            "联想(北京)有限责任公司",
            "聯想 （北京） 有限公司",
            "联想·北京有限公司",
            "联想 北京 有限公司",
        ] {
            assert_eq!(normalise(variant), expected, "{variant}");
        }
    }

    #[test]
    fn every_traditional_character_of_the_table_is_simplified_once() {
        let mut seen = std::collections::HashSet::new();
        for (traditional, simple) in TRADITIONAL {
            assert!(seen.insert(traditional), "{traditional} twice in the table");
            assert_eq!(simplified(*traditional), *simple);
        }
        assert_eq!(simplified('联'), '联');
        assert_eq!(simplified('a'), 'a');
    }

    #[test]
    fn full_width_latin_and_digits_become_half_width_lower_case() {
        assert_eq!(normalise("ＡＢＣ科技１２３有限公司"), "abc科技123有限公司");
    }

    #[test]
    fn the_core_drops_company_forms() {
        assert_eq!(core(&normalise("华为技术有限公司")), "华为技术");
        assert_eq!(core(&normalise("中国平安保险(集团)股份有限公司")), "中国平安保险");
        assert_eq!(core("公司"), "公司", "a name that is only a suffix keeps it");
        assert_eq!(core_length("华为技术有限公司"), 4);
    }

    #[test]
    fn a_search_text_keeps_what_a_core_must_contain() {
        assert_eq!(core_of_contained("平安保险集团"), "平安保险");
        assert_eq!(core_of_contained("华为技术有限公司"), "华为技术");
        assert_eq!(core_of_contained("技术有限"), "技术");
        assert_eq!(core_of_contained("联想北京"), "联想北京");
        assert_eq!(core_of_contained("有限公司"), "", "only form characters narrow nothing");
    }

    /// Names and texts over a few ordinary characters and every character of the company forms,
    /// so that forms, parts of forms and runs of them turn up in every position.
    fn name_characters() -> impl Strategy<Value = String> {
        let mut alphabet: Vec<char> = "联想北京1a".chars().collect();
        alphabet.extend(FORM_SUFFIXES.iter().flat_map(|suffix| suffix.chars()));
        alphabet.sort_unstable();
        alphabet.dedup();
        proptest::collection::vec(proptest::sample::select(alphabet), 1..16)
            .prop_map(|characters| characters.into_iter().collect())
    }

    proptest! {
        /// What the registry's search relies on: a name that contains a text has the text's
        /// `core_of_contained` inside its core, and its core is where the index looks.
        #[test]
        fn every_name_containing_a_text_has_its_core_part_in_its_core(
            name in name_characters(),
            start in 0usize..16,
            length in 0usize..16,
        ) {
            let characters: Vec<char> = name.chars().collect();
            let start = start % characters.len();
            let end = (start + length).min(characters.len());
            let text: String = characters[start..end].iter().collect();
            let core = core(&name);
            prop_assert!(name.starts_with(core));
            prop_assert_eq!(core_length(&name), core.chars().count());
            prop_assert!(core.contains(core_of_contained(&text)), "{} in {} (core {})", text, name, core);
        }
    }
}
