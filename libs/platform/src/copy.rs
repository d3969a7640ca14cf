//! Writing rows for `COPY … FROM STDIN` (binary format) inside a transaction: the cheapest way to
//! put many new rows into a table. Used by bulk paths whose rows are known to be new; a clash with
//! a unique index fails the whole COPY, so callers run it under a savepoint with a fallback.

use std::sync::Mutex;

/// Rows for `COPY … FROM STDIN WITH (FORMAT binary)`: each value as Postgres stores it, so the
/// server parses nothing (no UUID, timestamp, date or number text to read back). Call the methods
/// in column order, [`BinaryCopy::row`] before each row, and send [`BinaryCopy::finish`]'s bytes
/// with [`copy_in_binary`].
pub struct BinaryCopy {
    out: Vec<u8>,
}

/// What every binary COPY's data begins with.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Postgres's epoch for dates and timestamps: 2000-01-01.
const POSTGRES_EPOCH_DAYS_FROM_CE: i32 = 730_120;
const POSTGRES_EPOCH_MICROS_FROM_UNIX: i64 = 946_684_800_000_000;

/// Buffers of finished COPYs, kept for the next ones. A bulk batch's data is a few MiB, and an
/// allocation that size is fresh memory the kernel zeroes on first touch, again for every batch
/// (with growing it by doubling, a twentieth of an import's own CPU).
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// How many buffers are kept, and up to what size each: enough for the writers of a bulk load
/// (a 4,000-subject import batch is about 2 MiB), and at most 32 MiB held for good by a process.
const SPARE_BUFFERS: usize = 8;
const SPARE_BYTES: usize = 4 << 20;

fn spare_buffer() -> Vec<u8> {
    SPARE.lock().ok().and_then(|mut spare| spare.pop()).unwrap_or_default()
}

fn keep_spare(mut buffer: Vec<u8>) {
    if buffer.capacity() > SPARE_BYTES {
        return;
    }
    buffer.clear();
    if let Ok(mut spare) = SPARE.lock()
        && spare.len() < SPARE_BUFFERS
    {
        spare.push(buffer);
    }
}

impl BinaryCopy {
    /// Room for about `capacity` bytes of rows, in a buffer a finished COPY left behind if there is one.
    pub fn new(capacity: usize) -> BinaryCopy {
        let mut out = spare_buffer();
        out.reserve(capacity + 21);
        out.extend_from_slice(SIGNATURE);
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

    pub fn optional_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(text) => self.text(text),
            None => self.null(),
        }
    }

    pub fn uuid(&mut self, value: uuid::Uuid) -> &mut Self {
        self.value(value.as_bytes())
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.value(value)
    }

    pub fn optional_bytes(&mut self, value: Option<&[u8]>) -> &mut Self {
        match value {
            Some(bytes) => self.bytes(bytes),
            None => self.null(),
        }
    }

    /// `jsonb`, serialised straight into the data (no string of its own per row): its binary form
    /// is a version byte, then the text, after the length patched in once known.
    pub fn jsonb_of(&mut self, value: &impl serde::Serialize) -> Result<&mut Self, serde_json::Error> {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        self.out.push(1);
        if let Err(error) = serde_json::to_writer(&mut self.out, value) {
            self.out.truncate(start);
            return Err(error);
        }
        let length = i32::try_from(self.out.len() - start - 4).expect("a COPY value under 2 GiB");
        self.out[start..start + 4].copy_from_slice(&length.to_be_bytes());
        Ok(self)
    }

    /// `numeric` from its decimal text (`-`? digits, then `.` and digits if any). Postgres's binary
    /// form: the digits in base 10,000 around the decimal point, the weight of the first (a power
    /// of 10,000), the sign and the display scale.
    pub fn numeric(&mut self, decimal: &str) -> Result<&mut Self, NotADecimal> {
        let (negative, unsigned) = match decimal.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, decimal),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits_only = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if whole.is_empty()
            || !digits_only(whole)
            || !digits_only(fraction)
            || (unsigned.contains('.') && fraction.is_empty())
        {
            return Err(NotADecimal(decimal.to_owned()));
        }
        let scale = i16::try_from(fraction.len()).map_err(|_| NotADecimal(decimal.to_owned()))?;
        let group = |text: &[u8]| text.iter().fold(0i16, |value, byte| value * 10 + i16::from(byte - b'0'));
        // Whole part in groups of four counted from the point leftwards, the fraction rightwards
        // (its last group padded with zeros on the right).
        let whole = whole.trim_start_matches('0');
        let head = whole.len() % 4;
        let mut groups: Vec<i16> = Vec::with_capacity(whole.len() / 4 + fraction.len() / 4 + 2);
        if head > 0 {
            groups.push(group(&whole.as_bytes()[..head]));
        }
        groups.extend(whole.as_bytes()[head..].chunks(4).map(group));
        let mut weight = i16::try_from(groups.len()).map_err(|_| NotADecimal(decimal.to_owned()))? - 1;
        for chunk in fraction.as_bytes().chunks(4) {
            groups.push(group(chunk) * [1000, 100, 10, 1][chunk.len() - 1]);
        }
        // Postgres stores no leading or trailing zero groups; zero itself has none at all.
        while groups.last() == Some(&0) {
            groups.pop();
        }
        let leading = groups.iter().take_while(|group| **group == 0).count();
        groups.drain(..leading);
        weight -= leading as i16;
        if groups.is_empty() {
            weight = 0;
        }
        let sign: u16 = if negative && !groups.is_empty() { 0x4000 } else { 0 };
        let length = 8 + 2 * groups.len();
        self.out.extend_from_slice(&i32::try_from(length).expect("a numeric under 2 GiB").to_be_bytes());
        self.out.extend_from_slice(
            &i16::try_from(groups.len()).map_err(|_| NotADecimal(decimal.to_owned()))?.to_be_bytes(),
        );
        self.out.extend_from_slice(&weight.to_be_bytes());
        self.out.extend_from_slice(&sign.to_be_bytes());
        self.out.extend_from_slice(&scale.to_be_bytes());
        for group in groups {
            self.out.extend_from_slice(&group.to_be_bytes());
        }
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

    pub fn int8(&mut self, value: i64) -> &mut Self {
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

    /// A one-dimensional array of `count` elements of type `element_type` (its OID), written by
    /// `elements` with the same calls as fields (an element is a length and its bytes, as a field).
    pub fn array(&mut self, element_type: u32, count: usize, elements: impl FnOnce(&mut Self)) -> &mut Self {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        self.out.extend_from_slice(&1i32.to_be_bytes());
        self.out.extend_from_slice(&0i32.to_be_bytes());
        self.out.extend_from_slice(&element_type.to_be_bytes());
        self.out.extend_from_slice(&i32::try_from(count).expect("an array under 2^31 elements").to_be_bytes());
        self.out.extend_from_slice(&1i32.to_be_bytes());
        elements(self);
        let length = i32::try_from(self.out.len() - start - 4).expect("a COPY value under 2 GiB");
        self.out[start..start + 4].copy_from_slice(&length.to_be_bytes());
        self
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

/// A value given to [`BinaryCopy::numeric`] that is not decimal text.
#[derive(Debug)]
pub struct NotADecimal(pub String);

impl std::fmt::Display for NotADecimal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "not a decimal number: {:?}", self.0)
    }
}

impl std::error::Error for NotADecimal {}

/// Send `data` built by [`BinaryCopy`] through `statement` (`COPY … FROM STDIN WITH (FORMAT binary)`);
/// The buffer is kept for a later [`BinaryCopy`].
pub async fn copy_in_binary(
    connection: &mut sqlx::PgConnection,
    statement: &str,
    data: Vec<u8>,
) -> Result<u64, sqlx::Error> {
    let result = async {
        let mut copy = connection.copy_in_raw(statement).await?;
        copy.send(data.as_slice()).await?;
        copy.finish().await
    }
    .await;
    keep_spare(data);
    result
}

/// The rows of `statement` (`COPY (…) TO STDOUT WITH (FORMAT binary)` of `columns` columns), each
/// made by `parse` from its values in column order. For reading many rows: each row of a query
/// costs the client a row object and a type check per column it reads; a COPY's rows are bytes
/// to walk.
pub async fn copy_out_rows<T>(
    connection: &mut sqlx::PgConnection,
    statement: &str,
    columns: i16,
    mut parse: impl FnMut(&mut BinaryRow<'_, '_>) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, sqlx::Error> {
    use futures::TryStreamExt;
    let mut stream = connection.copy_out_raw(statement).await?;
    let mut data = Vec::new();
    while let Some(chunk) = stream.try_next().await? {
        data.extend_from_slice(&chunk);
    }
    let mut rows = BinaryRows::new(&data)?;
    let mut parsed = Vec::new();
    while let Some(mut row) = rows.next_row(columns)? {
        parsed.push(parse(&mut row)?);
    }
    Ok(parsed)
}

/// A string literal for a statement that cannot take parameters (a COPY): quotes doubled, under
/// `standard_conforming_strings` (on since PostgreSQL 9.1), where backslashes are plain characters.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The rows of a binary COPY's output, in order.
pub struct BinaryRows<'a> {
    rest: &'a [u8],
}

fn malformed(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("binary COPY data: {what}"))
}

impl<'a> BinaryRows<'a> {
    /// Check the header and start before the first row.
    pub fn new(data: &'a [u8]) -> Result<BinaryRows<'a>, sqlx::Error> {
        let rest = data.strip_prefix(SIGNATURE).ok_or_else(|| malformed("no PGCOPY signature"))?;
        let mut rows = BinaryRows { rest };
        let _flags = rows.take_array::<4>()?;
        let extension = i32::from_be_bytes(rows.take_array()?);
        rows.take(usize::try_from(extension).map_err(|_| malformed("header extension length"))?)?;
        Ok(rows)
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], sqlx::Error> {
        if self.rest.len() < count {
            return Err(malformed("cut short"));
        }
        let (taken, rest) = self.rest.split_at(count);
        self.rest = rest;
        Ok(taken)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], sqlx::Error> {
        // `take` gives exactly N bytes or an error.
        Ok(self.take(N)?.try_into().unwrap_or([0; N]))
    }

    /// The next row, `None` after the last; a row must have `columns` values.
    pub fn next_row(&mut self, columns: i16) -> Result<Option<BinaryRow<'_, 'a>>, sqlx::Error> {
        let count = i16::from_be_bytes(self.take_array()?);
        if count == -1 {
            return Ok(None);
        }
        if count != columns {
            return Err(malformed(&format!("a row of {count} values where {columns} were expected")));
        }
        Ok(Some(BinaryRow { rows: self }))
    }
}

/// One row's values: read each in column order with the method of its type.
pub struct BinaryRow<'r, 'a> {
    rows: &'r mut BinaryRows<'a>,
}

impl<'a> BinaryRow<'_, 'a> {
    /// The next value's bytes, `None` for NULL.
    pub fn optional_value(&mut self) -> Result<Option<&'a [u8]>, sqlx::Error> {
        let length = i32::from_be_bytes(self.rows.take_array()?);
        if length < 0 {
            return Ok(None);
        }
        self.rows.take(length as usize).map(Some)
    }

    fn value(&mut self, what: &str) -> Result<&'a [u8], sqlx::Error> {
        self.optional_value()?.ok_or_else(|| malformed(&format!("NULL where {what} was expected")))
    }

    pub fn text(&mut self) -> Result<&'a str, sqlx::Error> {
        std::str::from_utf8(self.value("text")?).map_err(|_| malformed("text that is not UTF-8"))
    }

    pub fn int2(&mut self) -> Result<i16, sqlx::Error> {
        Ok(i16::from_be_bytes(self.value("an int2")?.try_into().map_err(|_| malformed("an int2 not of 2 bytes"))?))
    }

    pub fn int4(&mut self) -> Result<i32, sqlx::Error> {
        Ok(i32::from_be_bytes(self.value("an int4")?.try_into().map_err(|_| malformed("an int4 not of 4 bytes"))?))
    }

    pub fn int8(&mut self) -> Result<i64, sqlx::Error> {
        Ok(i64::from_be_bytes(self.value("an int8")?.try_into().map_err(|_| malformed("an int8 not of 8 bytes"))?))
    }

    pub fn uuid(&mut self) -> Result<uuid::Uuid, sqlx::Error> {
        let bytes = self.value("a uuid")?.try_into().map_err(|_| malformed("a uuid not of 16 bytes"))?;
        Ok(uuid::Uuid::from_bytes(bytes))
    }

    pub fn boolean(&mut self) -> Result<bool, sqlx::Error> {
        match self.value("a boolean")? {
            [byte] => Ok(*byte != 0),
            _ => Err(malformed("a boolean not of 1 byte")),
        }
    }

    pub fn optional_date(&mut self) -> Result<Option<chrono::NaiveDate>, sqlx::Error> {
        let Some(bytes) = self.optional_value()? else { return Ok(None) };
        let days = i32::from_be_bytes(bytes.try_into().map_err(|_| malformed("a date not of 4 bytes"))?);
        chrono::NaiveDate::from_num_days_from_ce_opt(days + POSTGRES_EPOCH_DAYS_FROM_CE)
            .map(Some)
            .ok_or_else(|| malformed("a date out of range (infinity?)"))
    }

    pub fn date(&mut self) -> Result<chrono::NaiveDate, sqlx::Error> {
        self.optional_date()?.ok_or_else(|| malformed("NULL where a date was expected"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_rows_read_back_what_binary_copy_writes() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let mut copy = BinaryCopy::new(64);
        let id = uuid::Uuid::from_u128(0x0190_f3a2_7c1e_7000_8000_0000_0000_0001);
        copy.row(6).text("91110108MA01ABCD2X").int2(-3).date(day).optional_date(None).boolean(true).int4(7);
        copy.row(6).text("税务").int2(5).date(day).optional_date(Some(day)).boolean(false).null();
        copy.row(3).uuid(id).int4(-70_000).int8(-(1 << 40));
        let data = copy.finish();

        let mut rows = BinaryRows::new(&data).unwrap();
        let mut row = rows.next_row(6).unwrap().unwrap();
        assert_eq!(row.text().unwrap(), "91110108MA01ABCD2X");
        assert_eq!(row.int2().unwrap(), -3);
        assert_eq!(row.date().unwrap(), day);
        assert_eq!(row.optional_date().unwrap(), None);
        assert!(row.boolean().unwrap());
        assert_eq!(row.optional_value().unwrap(), Some(&7i32.to_be_bytes()[..]));
        let mut row = rows.next_row(6).unwrap().unwrap();
        assert_eq!(row.text().unwrap(), "税务");
        assert_eq!(row.int2().unwrap(), 5);
        assert_eq!(row.date().unwrap(), day);
        assert_eq!(row.optional_date().unwrap(), Some(day));
        assert!(!row.boolean().unwrap());
        assert!(row.int8().unwrap_err().to_string().contains("NULL where an int8 was expected"));
        let mut row = rows.next_row(3).unwrap().unwrap();
        assert_eq!((row.uuid().unwrap(), row.int4().unwrap(), row.int8().unwrap()), (id, -70_000, -(1 << 40)));
        assert!(rows.next_row(6).unwrap().is_none(), "the trailer ends the rows");
    }

    #[test]
    fn binary_rows_refuse_what_is_not_the_expected_copy() {
        assert!(BinaryRows::new(b"PGCOPY\n").is_err(), "a short header");
        let mut copy = BinaryCopy::new(16);
        copy.row(2).int2(1).int2(2);
        let data = copy.finish();
        let error = BinaryRows::new(&data).unwrap().next_row(3).err().unwrap();
        assert!(error.to_string().contains("a row of 2 values where 3 were expected"), "{error}");
        let cut = &data[..data.len() - 3];
        let mut rows = BinaryRows::new(cut).unwrap();
        let mut row = rows.next_row(2).unwrap().unwrap();
        assert_eq!(row.int2().unwrap(), 1);
        assert!(row.int2().unwrap_err().to_string().contains("cut short"));
        assert_eq!(literal("it's"), "'it''s'");
    }

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
        copy.row(2).jsonb_of(&serde_json::json!({"a": 1})).unwrap().jsonb_of(&[1, 2]).unwrap();
        let data = copy.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        expected.extend_from_slice(&[0, 6, 0, 0, 0, 2, 0, 7, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 8]);
        expected.extend_from_slice(&1_000_000i64.to_be_bytes());
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0, 0, 0, 3, 1, b'{', b'}', 0, 0, 0, 1, 1]);
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 8, 1]);
        expected.extend_from_slice(b"{\"a\":1}");
        expected.extend_from_slice(&[0, 0, 0, 6, 1]);
        expected.extend_from_slice(b"[1,2]");
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(data, expected);
    }
}
