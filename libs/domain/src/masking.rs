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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_six_and_four() {
        assert_eq!(mask_id_number("110105194912310021"), "110105********0021");
        assert_eq!(mask_id_number("12345"), "*****");
        assert_eq!(mask_id_number("11010519491231002X"), "110105********002X");
        // Not ASCII (full-width digits, as some forms send them): cut by characters all the same.
        assert_eq!(mask_id_number("１１０１０５１９４９１２３１００２１"), "１１０１０５********００２１");
    }
}
