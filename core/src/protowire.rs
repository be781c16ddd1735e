//! Protobuf fields read in place from a byte slice, for the readers that decode the hot messages
//! by hand (remote_write 1.0 requests in the receivers, OTLP metrics requests in
//! [`crate::otlp_protobuf`]). Keys and lengths of one byte, which nearly every field has, are read
//! here; longer ones, and every error, by prost, so that a reader refuses what prost refuses.

use prost::encoding::{self, DecodeContext, WireType, decode_varint, skip_field};

/// A field's key, read in place when it is one byte (field numbers under 16), else by prost,
/// whose errors it gives.
#[inline(always)]
pub fn key(buf: &mut &[u8]) -> Result<(u32, WireType), String> {
    if let [b, rest @ ..] = *buf
        && *b < 0x80
        && *b >= 8
    {
        let wire = match b & 7 {
            0 => WireType::Varint,
            1 => WireType::SixtyFourBit,
            2 => WireType::LengthDelimited,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::ThirtyTwoBit,
            _ => return encoding::decode_key(buf).map_err(message),
        };
        *buf = rest;
        return Ok((u32::from(b >> 3), wire));
    }
    encoding::decode_key(buf).map_err(message)
}

/// A varint, read in place when it is one byte (most lengths), else by prost.
#[inline(always)]
pub fn varint(buf: &mut &[u8]) -> Result<u64, prost::DecodeError> {
    if let [b, rest @ ..] = *buf
        && *b < 0x80
    {
        *buf = rest;
        return Ok(u64::from(*b));
    }
    decode_varint(buf)
}

/// The bytes of a length-delimited field; `field` names it in an error.
#[inline(always)]
pub fn delimited<'a>(wire: WireType, buf: &mut &'a [u8], field: &str) -> Result<&'a [u8], String> {
    if wire != WireType::LengthDelimited {
        let expected = WireType::LengthDelimited;
        let problem = format_args!("invalid wire type: {wire:?} (expected {expected:?})");
        return Err(of_field(field, problem));
    }
    let len = varint(buf).map_err(|e| of_field(field, e))?;
    if len > buf.len() as u64 {
        return Err(of_field(field, "buffer underflow"));
    }
    let (bytes, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(bytes)
}

/// The UTF-8 text of a string field's bytes.
#[inline(always)]
pub fn utf8<'a>(bytes: &'a [u8], field: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes)
        .map_err(|_| of_field(field, "invalid string value: data is not UTF-8 encoded"))
}

/// How many fields with the one-byte key `at[0]` follow one another from `at` on, the first
/// included, and how many bytes they take: the room a repeated field needs, when its
/// occurrences are together as encoders write them. Nothing when `at` does not start with a
/// one-byte key.
#[inline(always)]
pub fn run(at: &[u8]) -> (usize, usize) {
    let Some(&key) = at.first().filter(|&&k| k < 0x80) else {
        return (0, 0);
    };
    let (mut n, mut buf) = (0, at);
    while let [k, rest @ ..] = buf
        && *k == key
    {
        let mut rest = rest;
        match varint(&mut rest) {
            Ok(len) if len <= rest.len() as u64 => buf = &rest[len as usize..],
            _ => break,
        }
        n += 1;
    }
    (n, at.len() - buf.len())
}

/// A string field. When its bytes lie in `checked` (valid UTF-8 as a whole), they are valid
/// on their own exactly when they start and end on its character boundaries, and are not
/// checked again.
#[inline(always)]
pub fn string<'a>(
    wire: WireType,
    buf: &mut &'a [u8],
    field: &str,
    checked: &'a str,
) -> Result<&'a str, String> {
    let bytes = delimited(wire, buf, field)?;
    let start = (bytes.as_ptr() as usize).wrapping_sub(checked.as_ptr() as usize);
    if let Some(s) = start
        .checked_add(bytes.len())
        .and_then(|end| checked.get(start..end))
    {
        return Ok(s);
    }
    utf8(bytes, field)
}

/// Steps over a field that is not read.
pub fn skip(tag: u32, wire: WireType, buf: &mut &[u8]) -> Result<(), String> {
    skip_field(wire, tag, buf, DecodeContext::default()).map_err(message)
}

// Errors are made out of line, so that the functions that read every field stay small.

#[cold]
#[inline(never)]
pub fn message(e: prost::DecodeError) -> String {
    e.to_string()
}

#[cold]
#[inline(never)]
pub fn of_field(field: &str, problem: impl std::fmt::Display) -> String {
    format!("{field}: {problem}")
}
