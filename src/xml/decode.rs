//! Turning the bytes of a message into UTF-8 text, honouring the encoding its byte-order mark,
//! first bytes and XML declaration say (XML 1.0 §4.3.3, Appendix F).
//!
//! Input: raw bytes. Output: the text as `Cow<str>` (borrowed when the input already is UTF-8;
//! UTF-16, ISO-8859-1 and windows-1252 are transcoded once). Fails with
//! [`XmlErrorKind::InvalidUtf8`], [`XmlErrorKind::UnknownEncoding`],
//! [`XmlErrorKind::EncodingMismatch`], [`XmlErrorKind::UnmappableByte`],
//! [`XmlErrorKind::UnpairedSurrogate`] or [`XmlErrorKind::Utf16OddLength`], each with line and
//! column (in characters) of the offending place.

use std::borrow::Cow;

use super::{XmlError, XmlErrorKind};

/// The encodings a gateway accepts. Real KITH messages are UTF-8 or ISO-8859-1; windows-1252 is
/// accepted because some EHR systems mislabel Latin-1 as it; UTF-16 because every XML processor
/// must read it (XML 1.0 §4.3.3) and libxml2 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Latin1,
    Windows1252,
    /// UTF-16, little-endian (byte-order mark `FF FE`, or `<?` as `3C 00 3F 00`).
    Utf16Le,
    /// UTF-16, big-endian (byte-order mark `FE FF`, or `<?` as `00 3C 00 3F`).
    Utf16Be,
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

/// The UTF-16 variant the first bytes announce, and how many of them are a byte-order mark
/// (XML 1.0 Appendix F.1: `FF FE` / `FE FF`, or without a mark the `<?` of the declaration).
fn utf16_signature(bytes: &[u8]) -> Option<(Encoding, usize)> {
    match bytes {
        [0xFF, 0xFE, ..] => Some((Encoding::Utf16Le, 2)),
        [0xFE, 0xFF, ..] => Some((Encoding::Utf16Be, 2)),
        [0x3C, 0x00, 0x3F, 0x00, ..] => Some((Encoding::Utf16Le, 0)),
        [0x00, 0x3C, 0x00, 0x3F, ..] => Some((Encoding::Utf16Be, 0)),
        _ => None,
    }
}

/// The encoding name in the XML declaration at the start of `text` (ASCII-compatible bytes),
/// lower-cased; `None` when there is no declaration or it names no encoding.
fn declared_name(text: &[u8]) -> Option<String> {
    if !text.starts_with(b"<?xml") {
        return None;
    }
    // An unclosed declaration is the parser's to report.
    let end = text.windows(2).position(|w| w == b"?>")?;
    let decl = &text[..end];
    let at = decl.windows(8).position(|w| w == b"encoding")?;
    let rest = decl[at + 8..].trim_ascii_start();
    let rest = rest.strip_prefix(b"=").unwrap_or(rest).trim_ascii_start();
    let (&quote, tail) = rest.split_first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let name_end = tail.iter().position(|&b| b == quote).unwrap_or(tail.len());
    Some(String::from_utf8_lossy(&tail[..name_end]).to_ascii_lowercase())
}

fn is_utf16_name(name: &str) -> bool {
    matches!(name, "utf-16" | "utf16" | "utf-16le" | "utf-16be")
}

/// The encoding `bytes` are in: UTF-16 by its byte-order mark or first bytes (Appendix F.1),
/// otherwise what the XML declaration names (UTF-8 when there is none, §4.3.3). A UTF-16
/// document's own declaration is checked by [`decode`] once it is readable.
pub fn detected_encoding(bytes: &[u8]) -> Result<Encoding, XmlError> {
    if let Some((encoding, _)) = utf16_signature(bytes) {
        return Ok(encoding);
    }
    let body = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    let Some(name) = declared_name(body) else {
        return Ok(Encoding::Utf8);
    };
    match name.as_str() {
        "utf-8" | "utf8" | "us-ascii" | "ascii" => Ok(Encoding::Utf8),
        "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" | "l1" => {
            Ok(Encoding::Latin1)
        }
        "windows-1252" | "cp1252" => Ok(Encoding::Windows1252),
        // §4.3.3: an entity in UTF-16 must begin with the byte-order mark (or, Appendix F, at
        // least with its declaration in UTF-16); this one's `<?xml` is in single bytes.
        n if is_utf16_name(n) => Err(error_at(
            bytes,
            0,
            XmlErrorKind::EncodingMismatch {
                declared: name,
                found: "single-byte text (no UTF-16 byte-order mark, '<?xml' not in UTF-16)",
            },
        )),
        _ => Err(error_at(bytes, 0, XmlErrorKind::UnknownEncoding(name))),
    }
}

/// `bytes` after a byte-order mark of `bom` bytes, read as UTF-16 (`encoding` says the byte
/// order), transcoded to UTF-8 in one pass.
fn transcode_utf16(bytes: &[u8], encoding: Encoding, bom: usize) -> Result<String, XmlError> {
    let body = &bytes[bom..];
    let pairs = body.chunks_exact(2);
    let odd = !pairs.remainder().is_empty();
    let units = pairs.map(|p| match encoding {
        Encoding::Utf16Be => u16::from_be_bytes([p[0], p[1]]),
        _ => u16::from_le_bytes([p[0], p[1]]),
    });
    // Mostly ASCII markup: one UTF-8 byte per UTF-16 unit; the string grows where it is not.
    let mut out = String::with_capacity(body.len() / 2);
    let at_end = |out: &String, kind| error_at(out.as_bytes(), out.len(), kind);
    for c in char::decode_utf16(units) {
        match c {
            Ok(c) => out.push(c),
            Err(e) => {
                return Err(at_end(
                    &out,
                    XmlErrorKind::UnpairedSurrogate {
                        unit: e.unpaired_surrogate(),
                    },
                ))
            }
        }
    }
    if odd {
        return Err(at_end(
            &out,
            XmlErrorKind::Utf16OddLength { bytes: body.len() },
        ));
    }
    let found = match (encoding, bom) {
        (Encoding::Utf16Be, 0) => "UTF-16BE (by its first bytes)",
        (Encoding::Utf16Be, _) => "UTF-16BE (by its byte-order mark)",
        (_, 0) => "UTF-16LE (by its first bytes)",
        _ => "UTF-16LE (by its byte-order mark)",
    };
    // §4.3.3: a declaration that names another encoding than the one the entity is in is a
    // fatal error. Without a name (libxml2 and expat accept that even without a mark) the first
    // bytes decide.
    match declared_name(out.as_bytes()) {
        None => Ok(out),
        Some(n) if n == "utf-16" || n == "utf16" => Ok(out),
        Some(n) if n == "utf-16le" && encoding == Encoding::Utf16Le => Ok(out),
        Some(n) if n == "utf-16be" && encoding == Encoding::Utf16Be => Ok(out),
        Some(declared) => Err(XmlError {
            line: 1,
            column: 1,
            kind: XmlErrorKind::EncodingMismatch { declared, found },
        }),
    }
}

/// Decodes `bytes` to UTF-8 text according to the detected encoding; a UTF-8 or UTF-16
/// byte-order mark is dropped.
pub fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, XmlError> {
    match detected_encoding(bytes)? {
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
        enc @ (Encoding::Utf16Le | Encoding::Utf16Be) => {
            let bom = utf16_signature(bytes).map_or(0, |(_, bom)| bom);
            transcode_utf16(bytes, enc, bom).map(Cow::Owned)
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
