//! Writing rows for `COPY … FROM STDIN` (text format) inside a transaction: the cheapest way to
//! put many new rows into a table. Used by bulk paths whose rows are known to be new; a clash with
//! a unique index fails the whole COPY, so callers run it under a savepoint with a fallback.

use std::fmt::Write;

/// Send `data` (rows built with [`CopyRow`]) through `statement` (`COPY table (columns) FROM STDIN`).
pub async fn copy_in(connection: &mut sqlx::PgConnection, statement: &str, data: &str) -> Result<u64, sqlx::Error> {
    let mut copy = connection.copy_in_raw(statement).await?;
    copy.send(data.as_bytes()).await?;
    copy.finish().await
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

    /// A text value, escaped: backslash, tab, newline and carriage return.
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.separator();
        for character in value.chars() {
            match character {
                '\\' => self.out.push_str("\\\\"),
                '\t' => self.out.push_str("\\t"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                other => self.out.push(other),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_for_copy_text() {
        let mut out = String::new();
        CopyRow::new(&mut out).text("a\tb\\c\nd").plain(42).null().boolean(true).bytes(&[0xab, 0x01]).end();
        assert_eq!(out, "a\\tb\\\\c\\nd\t42\t\\N\tt\t\\\\xab01\n");
    }
}
