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
