//! Writing rows for `COPY … FROM STDIN` (text format) inside a transaction: the cheapest way to
//! put many new rows into a table. Used by bulk paths whose rows are known to be new; a clash with
//! a unique index fails the whole COPY, so callers run it under a savepoint with a fallback.

use std::fmt::Write;

/// Send `data` (rows built with [`CopyRow`]) through `statement` (`COPY table (columns) FROM STDIN`).
pub async fn copy_in(connection: &mut sqlx::PgConnection, statement: &str, data: &str) -> Result<u64, sqlx::Error> {
    copy_in_binary(connection, statement, data.as_bytes()).await
}

/// One row of COPY text: call the `push_*` methods in column order, then [`CopyRow::end`].
pub struct CopyRow<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> CopyRow<'a> {
    pub fn new(out: &'a mut String) -> CopyRow<'a> {
        CopyRow { out, first: true }
    }

    fn separator(&mut self) {
        if !self.first {
            self.out.push('\t');
        }
        self.first = false;
    }

    /// A text value, escaped: backslash, tab, newline and carriage return. Those are ASCII, and
    /// no byte of a multi-byte UTF-8 character is, so the runs between them are copied whole
    /// (pushing a Chinese name character by character was 7% of an import's own CPU).
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.separator();
        let mut rest = value;
        while let Some(at) = rest.bytes().position(|byte| matches!(byte, b'\\' | b'\t' | b'\n' | b'\r')) {
            self.out.push_str(&rest[..at]);
            self.out.push_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'\t' => "\\t",
                b'\n' => "\\n",
                _ => "\\r",
            });
            rest = &rest[at + 1..];
        }
        self.out.push_str(rest);
        self
    }

    /// Anything whose `Display` needs no escaping (numbers, dates, UUIDs).
    pub fn plain(&mut self, value: impl std::fmt::Display) -> &mut Self {
        self.separator();
        let _ = write!(self.out, "{value}");
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.separator();
        self.out.push_str("\\N");
        self
    }

    pub fn optional(&mut self, value: Option<impl std::fmt::Display>) -> &mut Self {
        match value {
            Some(value) => self.plain(value),
            None => self.null(),
        }
    }

    pub fn boolean(&mut self, value: bool) -> &mut Self {
        self.plain(if value { 't' } else { 'f' })
    }

    /// A bytea value in hex form (`\x…`, its backslash doubled for COPY).
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.separator();
        self.out.push_str("\\\\x");
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.out.reserve(value.len() * 2);
        for byte in value {
            self.out.push(char::from(HEX[usize::from(byte >> 4)]));
            self.out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        self
    }

    pub fn end(&mut self) {
        self.out.push('\n');
    }
}

/// Rows for `COPY … FROM STDIN WITH (FORMAT binary)`: each value as Postgres stores it, so the
/// server parses nothing (no UUID, timestamp or date text to read back). For the hottest write of
/// the platform, the check log; call the methods in column order, [`BinaryCopy::row`] before each
/// row, and send [`BinaryCopy::finish`]'s bytes.
pub struct BinaryCopy {
    out: Vec<u8>,
}

/// Postgres's epoch for dates and timestamps: 2000-01-01.
const POSTGRES_EPOCH_DAYS_FROM_CE: i32 = 730_120;
const POSTGRES_EPOCH_MICROS_FROM_UNIX: i64 = 946_684_800_000_000;

impl BinaryCopy {
    pub fn new(capacity: usize) -> BinaryCopy {
        let mut out = Vec::with_capacity(capacity + 21);
        out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        out.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        out.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        BinaryCopy { out }
    }

    /// Start a row of `columns` values.
    pub fn row(&mut self, columns: i16) -> &mut Self {
        self.out.extend_from_slice(&columns.to_be_bytes());
        self
    }

    fn value(&mut self, bytes: &[u8]) -> &mut Self {
        let length = i32::try_from(bytes.len()).expect("a COPY value under 2 GiB");
        self.out.extend_from_slice(&length.to_be_bytes());
        self.out.extend_from_slice(bytes);
        self
    }

    /// `text` and `varchar`.
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.value(value.as_bytes())
    }

    pub fn uuid(&mut self, value: uuid::Uuid) -> &mut Self {
        self.value(value.as_bytes())
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.value(value)
    }

    /// `json`, serialised straight into the data (no string of its own per row).
    pub fn json_of(&mut self, value: &impl serde::Serialize) -> Result<&mut Self, serde_json::Error> {
        self.serialised(value, None)
    }

    /// `jsonb`, serialised straight into the data (its binary form is a version byte, then the text).
    pub fn jsonb_of(&mut self, value: &impl serde::Serialize) -> Result<&mut Self, serde_json::Error> {
        self.serialised(value, Some(1))
    }

    /// A value's JSON after its length (patched in once known), with `version` first for `jsonb`.
    fn serialised(
        &mut self,
        value: &impl serde::Serialize,
        version: Option<u8>,
    ) -> Result<&mut Self, serde_json::Error> {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        self.out.extend(version);
        if let Err(error) = serde_json::to_writer(&mut self.out, value) {
            self.out.truncate(start);
            return Err(error);
        }
        let length = i32::try_from(self.out.len() - start - 4).expect("a COPY value under 2 GiB");
        self.out[start..start + 4].copy_from_slice(&length.to_be_bytes());
        Ok(self)
    }

    pub fn boolean(&mut self, value: bool) -> &mut Self {
        self.value(&[u8::from(value)])
    }

    pub fn int2(&mut self, value: i16) -> &mut Self {
        self.value(&value.to_be_bytes())
    }

    pub fn int4(&mut self, value: i32) -> &mut Self {
        self.value(&value.to_be_bytes())
    }

    pub fn optional_date(&mut self, value: Option<chrono::NaiveDate>) -> &mut Self {
        match value {
            Some(day) => self.date(day),
            None => self.null(),
        }
    }

    pub fn timestamptz(&mut self, value: chrono::DateTime<chrono::Utc>) -> &mut Self {
        self.value(&(value.timestamp_micros() - POSTGRES_EPOCH_MICROS_FROM_UNIX).to_be_bytes())
    }

    pub fn date(&mut self, value: chrono::NaiveDate) -> &mut Self {
        use chrono::Datelike;
        self.value(&(value.num_days_from_ce() - POSTGRES_EPOCH_DAYS_FROM_CE).to_be_bytes())
    }

    pub fn null(&mut self) -> &mut Self {
        self.out.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    /// The whole COPY data, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&(-1i16).to_be_bytes());
        self.out
    }
}

/// Send `data` built by [`BinaryCopy`] through `statement` (`COPY … FROM STDIN WITH (FORMAT binary)`);
/// [`copy_in`] sends text rows the same way.
pub async fn copy_in_binary(
    connection: &mut sqlx::PgConnection,
    statement: &str,
    data: &[u8],
) -> Result<u64, sqlx::Error> {
    let mut copy = connection.copy_in_raw(statement).await?;
    copy.send(data).await?;
    copy.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_rows_carry_postgres_epochs_and_lengths() {
        let mut copy = BinaryCopy::new(64);
        let day = chrono::NaiveDate::from_ymd_opt(2000, 1, 2).unwrap();
        let at = chrono::DateTime::from_timestamp(946_684_801, 0).unwrap();
        copy.row(6)
            .int2(7)
            .date(day)
            .timestamptz(at)
            .optional_date(None)
            .jsonb_of(&serde_json::json!({}))
            .unwrap()
            .boolean(true);
        copy.row(2).jsonb_of(&serde_json::json!({"a": 1})).unwrap().json_of(&[1, 2]).unwrap();
        let data = copy.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        expected.extend_from_slice(&[0, 6, 0, 0, 0, 2, 0, 7, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 8]);
        expected.extend_from_slice(&1_000_000i64.to_be_bytes());
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0, 0, 0, 3, 1, b'{', b'}', 0, 0, 0, 1, 1]);
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 8, 1]);
        expected.extend_from_slice(b"{\"a\":1}");
        expected.extend_from_slice(&[0, 0, 0, 5]);
        expected.extend_from_slice(b"[1,2]");
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(data, expected);
    }

    #[test]
    fn values_are_escaped_for_copy_text() {
        let mut out = String::new();
        CopyRow::new(&mut out)
            .text("a\tb\\c\nd")
            .text("联想(北京)\r\n有限公司\\")
            .text("")
            .plain(42)
            .null()
            .boolean(true)
            .bytes(&[0xab, 0x01])
            .end();
        assert_eq!(out, "a\\tb\\\\c\\nd\t联想(北京)\\r\\n有限公司\\\\\t\t42\t\\N\tt\t\\\\xab01\n");
    }
}
