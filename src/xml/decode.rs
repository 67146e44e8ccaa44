//! Turning the bytes of a message into UTF-8 text, honouring the encoding its XML declaration
//! names (XML 1.0 §4.3.3, Appendix F).
//!
//! Input: raw bytes. Output: the text as `Cow<str>` (borrowed when the input already is UTF-8).
//! Fails with [`XmlErrorKind::InvalidUtf8`], [`XmlErrorKind::UnknownEncoding`] or
//! [`XmlErrorKind::UnmappableByte`], each with line and column of the offending byte.

use std::borrow::Cow;

use super::{XmlError, XmlErrorKind};

/// The encodings a gateway accepts. Real KITH messages are UTF-8 or ISO-8859-1; windows-1252 is
/// accepted because some EHR systems mislabel Latin-1 as it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Latin1,
    Windows1252,
}

/// windows-1252 bytes 0x80..=0x9F; `None` marks the five bytes the code page leaves undefined.
const CP1252_HIGH: [Option<char>; 32] = [
    Some('\u{20AC}'),
    None,
    Some('\u{201A}'),
    Some('\u{0192}'),
    Some('\u{201E}'),
    Some('\u{2026}'),
    Some('\u{2020}'),
    Some('\u{2021}'),
    Some('\u{02C6}'),
    Some('\u{2030}'),
    Some('\u{0160}'),
    Some('\u{2039}'),
    Some('\u{0152}'),
    None,
    Some('\u{017D}'),
    None,
    None,
    Some('\u{2018}'),
    Some('\u{2019}'),
    Some('\u{201C}'),
    Some('\u{201D}'),
    Some('\u{2022}'),
    Some('\u{2013}'),
    Some('\u{2014}'),
    Some('\u{02DC}'),
    Some('\u{2122}'),
    Some('\u{0161}'),
    Some('\u{203A}'),
    Some('\u{0153}'),
    None,
    Some('\u{017E}'),
    Some('\u{0178}'),
];

/// Line and column (both 1-based, column counted in characters) of byte `offset` in `bytes`.
pub(crate) fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let upto = &bytes[..offset.min(bytes.len())];
    let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = upto.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    // Count characters, not bytes: UTF-8 continuation bytes do not start a character.
    let column = upto[line_start..]
        .iter()
        .filter(|&&b| (b & 0xC0) != 0x80)
        .count()
        + 1;
    (line, column)
}

fn error_at(bytes: &[u8], offset: usize, kind: XmlErrorKind) -> XmlError {
    let (line, column) = line_col(bytes, offset);
    XmlError { line, column, kind }
}

/// The encoding named by the XML declaration at the start of `bytes` (UTF-8 when there is none,
/// XML 1.0 §4.3.3). UTF-16 and every other name are refused: no real message uses them.
pub fn declared_encoding(bytes: &[u8]) -> Result<Encoding, XmlError> {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(error_at(
            bytes,
            0,
            XmlErrorKind::UnknownEncoding("UTF-16".into()),
        ));
    }
    let body = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    if !body.starts_with(b"<?xml") {
        return Ok(Encoding::Utf8);
    }
    let end = match body.windows(2).position(|w| w == b"?>") {
        Some(e) => e,
        None => return Ok(Encoding::Utf8), // the parser reports the unclosed declaration
    };
    let decl = &body[..end];
    let Some(at) = decl.windows(8).position(|w| w == b"encoding") else {
        return Ok(Encoding::Utf8);
    };
    let rest = &decl[at + 8..];
    let rest = rest
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .copied()
        .collect::<Vec<u8>>();
    let rest = rest.strip_prefix(b"=").unwrap_or(&rest);
    let rest: Vec<u8> = rest
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .copied()
        .collect();
    let Some((&quote, tail)) = rest.split_first() else {
        return Ok(Encoding::Utf8);
    };
    if quote != b'"' && quote != b'\'' {
        return Ok(Encoding::Utf8);
    }
    let name_end = tail.iter().position(|&b| b == quote).unwrap_or(tail.len());
    let name = String::from_utf8_lossy(&tail[..name_end]).to_ascii_lowercase();
    match name.as_str() {
        "utf-8" | "utf8" | "us-ascii" | "ascii" => Ok(Encoding::Utf8),
        "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" | "l1" => {
            Ok(Encoding::Latin1)
        }
        "windows-1252" | "cp1252" => Ok(Encoding::Windows1252),
        _ => Err(error_at(bytes, 0, XmlErrorKind::UnknownEncoding(name))),
    }
}

/// Decodes `bytes` to UTF-8 text according to the declared encoding; a UTF-8 byte-order mark
/// is dropped.
pub fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, XmlError> {
    match declared_encoding(bytes)? {
        Encoding::Utf8 => {
            let body = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
            let skipped = bytes.len() - body.len();
            match std::str::from_utf8(body) {
                Ok(s) => Ok(Cow::Borrowed(s)),
                Err(e) => Err(error_at(
                    bytes,
                    skipped + e.valid_up_to(),
                    XmlErrorKind::InvalidUtf8,
                )),
            }
        }
        Encoding::Latin1 | Encoding::Windows1252 if bytes.is_ascii() => {
            Ok(Cow::Borrowed(std::str::from_utf8(bytes).map_err(|_| {
                error_at(bytes, 0, XmlErrorKind::InvalidUtf8)
            })?))
        }
        Encoding::Latin1 => {
            let mut out = String::with_capacity(bytes.len() + bytes.len() / 8);
            for run in bytes.split_inclusive(|b| !b.is_ascii()) {
                match run.split_last() {
                    Some((&last, head)) if !last.is_ascii() => {
                        out.push_str(std::str::from_utf8(head).unwrap_or_default());
                        out.push(char::from(last));
                    }
                    _ => out.push_str(std::str::from_utf8(run).unwrap_or_default()),
                }
            }
            Ok(Cow::Owned(out))
        }
        Encoding::Windows1252 => {
            let mut out = String::with_capacity(bytes.len() + bytes.len() / 8);
            for (i, &b) in bytes.iter().enumerate() {
                if (0x80..0xA0).contains(&b) {
                    match CP1252_HIGH[usize::from(b - 0x80)] {
                        Some(c) => out.push(c),
                        None => {
                            return Err(error_at(
                                bytes,
                                i,
                                XmlErrorKind::UnmappableByte {
                                    byte: b,
                                    encoding: "windows-1252",
                                },
                            ))
                        }
                    }
                } else {
                    out.push(b as char);
                }
            }
            Ok(Cow::Owned(out))
        }
    }
}
