//! Protobuf fields written by hand, for batch events encoded straight from the rows they announce
//! (see [`super::enqueue_encoded`]): each function writes a field as prost does. Proto3 leaves out
//! empty strings, zeros and false, but never the elements of a repeated field.

use prost::encoding::{WireType, encode_key, encode_varint};

/// A string field; nothing when it is empty.
pub fn text(tag: u32, value: &str, out: &mut Vec<u8>) {
    if !value.is_empty() {
        element(tag, value.as_bytes(), out);
    }
}

/// A length-delimited field written even when empty: an element of a repeated field, or an
/// embedded message.
pub fn element(tag: u32, value: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// A varint field (an integer, an enum or a bool); nothing when it is zero.
pub fn number(tag: u32, value: i64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(value as u64, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    struct Sample {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(int64, tag = "2")]
        count: i64,
        #[prost(string, repeated, tag = "3")]
        items: Vec<String>,
        #[prost(bool, tag = "4")]
        flag: bool,
        #[prost(message, optional, tag = "5")]
        inner: Option<Box<Sample>>,
    }

    fn written(sample: &Sample) -> Vec<u8> {
        let mut out = Vec::new();
        text(1, &sample.name, &mut out);
        number(2, sample.count, &mut out);
        for item in &sample.items {
            element(3, item.as_bytes(), &mut out);
        }
        number(4, i64::from(sample.flag), &mut out);
        if let Some(inner) = &sample.inner {
            element(5, &written(inner), &mut out);
        }
        out
    }

    #[test]
    fn fields_are_written_as_prost_writes_them() {
        let empty = Sample { name: String::new(), count: 0, items: vec![String::new()], flag: false, inner: None };
        let full = Sample {
            name: "信用".to_owned(),
            count: -3,
            items: vec!["a".to_owned(), String::new(), "x".repeat(200)],
            flag: true,
            inner: Some(Box::new(empty.clone())),
        };
        for sample in [empty, full] {
            assert_eq!(written(&sample), sample.encode_to_vec(), "{sample:?}");
        }
    }
}
