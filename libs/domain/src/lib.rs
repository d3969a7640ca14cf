//! Pure rules of the domain, no I/O: identifiers of subjects and persons, masking of personal data,
//! normalisation of names for search. Each rule quotes the standard or seed it comes from.

pub mod calendar;
pub mod credit_code;
pub mod disclosure;
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

#[cfg(test)]
mod tests {
    #[test]
    fn trimmed_cuts_surrounding_spaces_and_keeps_inner_ones() {
        assert_eq!(super::trimmed(" 张 三\u{3000}".to_owned()), "张 三");
        let kept = "张三".to_owned();
        let pointer = kept.as_ptr();
        let same = super::trimmed(kept);
        assert_eq!(same.as_ptr(), pointer, "nothing to cut: the same allocation");
    }
}
