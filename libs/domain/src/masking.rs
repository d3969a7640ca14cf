//! Masking personal data for callers without the right to see it (seed 004 二(三)).

/// Keep the first 6 and last 4 characters of an ID number: `110105********1234`. Shorter input is
/// masked whole, so nothing of a malformed number leaks.
pub fn mask_id_number(id_number: &str) -> String {
    // A valid number is ASCII (digits and X): cut it by bytes, without a vector of its characters
    // (every imported subject's representative is masked once).
    let length = id_number.len();
    if id_number.is_ascii() && length >= 12 {
        let mut masked = String::with_capacity(length);
        masked.push_str(&id_number[..6]);
        masked.extend(std::iter::repeat_n('*', length - 10));
        masked.push_str(&id_number[length - 4..]);
        return masked;
    }
    let chars: Vec<char> = id_number.chars().collect();
    if chars.len() < 12 {
        return "*".repeat(chars.len());
    }
    let hidden = chars.len() - 10;
    chars[..6].iter().chain(std::iter::repeat_n(&'*', hidden)).chain(&chars[chars.len() - 4..]).collect()
}

/// `text` with every resident ID number in it masked as [`mask_id_number`] masks one: a run of 17
/// digits and a digit or `X`, not part of a longer run of digits or letters, whose positions 7-14
/// are a birth date from 1900 on. The check character is not required, so a mistyped number is
/// masked too; a run of 18 digits that happens to hold such a date is masked with them (about one in
/// two thousand). Borrowed when there is nothing to mask: most texts hold none.
pub fn mask_id_numbers_in(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while at + 18 <= bytes.len() {
        let run = bytes[at..].iter().take_while(|byte| byte.is_ascii_alphanumeric()).count();
        if run == 0 {
            // Past one character, whatever its length in UTF-8.
            at += text[at..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        if run == 18 && looks_like_an_id_number(&bytes[at..at + 18]) {
            found.push(at);
        }
        at += run;
    }
    if found.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut masked = String::with_capacity(text.len());
    let mut copied = 0;
    for start in found {
        masked.push_str(&text[copied..start]);
        masked.push_str(&mask_id_number(&text[start..start + 18]));
        copied = start + 18;
    }
    masked.push_str(&text[copied..]);
    std::borrow::Cow::Owned(masked)
}

/// [`mask_id_numbers_in`] in place: a record's fields and text as they are answered.
pub fn mask_id_numbers_of(text: &mut String) {
    if let std::borrow::Cow::Owned(masked) = mask_id_numbers_in(text) {
        *text = masked;
    }
}

fn looks_like_an_id_number(candidate: &[u8]) -> bool {
    let digits = candidate[..17].iter().all(u8::is_ascii_digit);
    let last = candidate[17].is_ascii_digit() || candidate[17].eq_ignore_ascii_case(&b'x');
    let first14: Vec<u32> = candidate[..14].iter().map(|digit| u32::from(digit.wrapping_sub(b'0'))).collect();
    digits && last && crate::resident_id::birth_date(&first14, chrono::Utc::now().date_naive()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_numbers_in_a_text_are_masked_and_nothing_else_is() {
        let id = "110105194912310021";
        assert_eq!(
            mask_id_numbers_in(&format!("当事人张三（身份证号{id}），罚款5000元")),
            "当事人张三（身份证号110105********0021），罚款5000元"
        );
        assert_eq!(mask_id_numbers_in(&format!("{id};11010519491231002x")), "110105********0021;110105********002x");
        // A wrong check character is still someone's number.
        assert_eq!(mask_id_numbers_in("110105194912310022"), "110105********0022");
        for kept in [
            "罚款5000元",
            "11010519491231002",   // 17 digits
            "1101051949123100211", // 19
            "110105194913310021",  // no such month
            "110105180012310021",  // born before 1900
            "91110108MA01ABCD2X",  // a credit code with letters
            "X110105194912310021", // part of a longer run
            "京海市监罚〔2025〕123号",
        ] {
            assert!(matches!(mask_id_numbers_in(kept), std::borrow::Cow::Borrowed(text) if text == kept), "{kept}");
        }
    }

    #[test]
    fn keeps_six_and_four() {
        assert_eq!(mask_id_number("110105194912310021"), "110105********0021");
        assert_eq!(mask_id_number("12345"), "*****");
        assert_eq!(mask_id_number("11010519491231002X"), "110105********002X");
        // Not ASCII (full-width digits, as some forms send them): cut by characters all the same.
        assert_eq!(mask_id_number("１１０１０５１９４９１２３１００２１"), "１１０１０５********００２１");
    }
}
