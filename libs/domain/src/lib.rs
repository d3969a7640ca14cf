//! Pure rules of the domain, no I/O: identifiers of subjects and persons, masking of personal data,
//! normalisation of names for search. Each rule quotes the standard or seed it comes from.

pub mod calendar;
pub mod credit_code;
pub mod disclosure;
pub mod draw;
pub mod grading;
pub mod masking;
pub mod name;
pub mod registration_number;
pub mod resident_id;

/// `text` without surrounding white space, reusing its allocation when there is none to cut: the
/// services validate what callers send by value, and a bulk load sends a million of each field.
pub fn trimmed(text: String) -> String {
    if text.trim().len() == text.len() { text } else { text.trim().to_owned() }
}

/// More than `limit` characters? Limits on what callers send count characters (a Chinese name is
/// three bytes a character), and counting needs a walk over the text; but no text of at most
/// `limit` bytes can have more characters than that, so most texts need no walk.
pub fn longer_than(text: &str, limit: usize) -> bool {
    text.len() > limit && text.chars().count() > limit
}

#[cfg(test)]
mod tests {
    #[test]
    fn longer_than_counts_characters_not_bytes() {
        assert!(!super::longer_than(&"号".repeat(4), 4), "4 characters, 12 bytes");
        assert!(super::longer_than(&"号".repeat(5), 4));
        assert!(!super::longer_than("abcd", 4));
        assert!(super::longer_than("abcde", 4));
    }

    #[test]
    fn trimmed_cuts_surrounding_spaces_and_keeps_inner_ones() {
        assert_eq!(super::trimmed(" 张 三\u{3000}".to_owned()), "张 三");
        let kept = "张三".to_owned();
        let pointer = kept.as_ptr();
        let same = super::trimmed(kept);
        assert_eq!(same.as_ptr(), pointer, "nothing to cut: the same allocation");
    }
}
