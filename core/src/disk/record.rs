//! The framing of one record in a segment file: `[len u32 LE][crc32 u32 LE][payload]`, the CRC-32
//! (IEEE, as `crc32fast` computes it) taken over the payload. A reader stops at the first record
//! that is torn (the file ends inside it) or corrupt (absurd length, CRC mismatch): what follows
//! cannot be trusted, since the length that would lead past it is itself suspect.

/// Bytes before the payload.
pub const HEADER: usize = 8;

/// The largest payload a record may have; a longer length is taken for corruption.
pub const MAX_PAYLOAD: usize = 256 << 20;

/// Appends one framed record holding `payload` to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("payloads are bounded by MAX_PAYLOAD");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What [`next`] found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<'a> {
    /// A good record: its payload, and the offset just past it.
    Record { payload: &'a [u8], end: usize },
    /// The data ends exactly here.
    End,
    /// The data ends inside a record (a torn write).
    Torn,
    /// The record here has an impossible length or a wrong checksum.
    Corrupt,
}

/// Reads the record that starts at `offset` in `data`. Never panics, whatever `data` holds.
pub fn next(data: &[u8], offset: usize) -> Read<'_> {
    let Some(rest) = data.get(offset..) else {
        return Read::Torn;
    };
    if rest.is_empty() {
        return Read::End;
    }
    if rest.len() < HEADER {
        return Read::Torn;
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len > MAX_PAYLOAD {
        return Read::Corrupt;
    }
    let Some(payload) = rest.get(HEADER..HEADER + len) else {
        return Read::Torn;
    };
    if crc32fast::hash(payload) != crc {
        return Read::Corrupt;
    }
    Read::Record {
        payload,
        end: offset + HEADER + len,
    }
}

/// Every good record from the start of `data`, with its offset, and how the data ended (`End`,
/// `Torn` or `Corrupt`, with the offset where the good prefix ends).
pub fn scan(data: &[u8]) -> (Vec<(usize, &[u8])>, Read<'static>, usize) {
    let mut records = Vec::new();
    let mut offset = 0;
    loop {
        match next(data, offset) {
            Read::Record { payload, end } => {
                records.push((offset, payload));
                offset = end;
            }
            Read::End => return (records, Read::End, offset),
            Read::Torn => return (records, Read::Torn, offset),
            Read::Corrupt => return (records, Read::Corrupt, offset),
        }
    }
}
