//! A minimal, zero-copy DER reader and writer for the few ASN.1 structures of CMS SignedData.
//!
//! Input: bytes that claim to be DER (X.690 §10). Output: tag/length/value views that borrow the
//! input, so the exact signed bytes (signed attributes, certificates) are available unchanged.
//! Failure: [`DerError`] naming what was expected and the byte offset; never a panic. Only
//! definite lengths in minimal form and low tag numbers are accepted — BER (indefinite lengths,
//! constructed strings) is refused, as DER is what the wire contract says (DESIGN.md §1).
//! Nesting is bounded by construction: the callers walk a fixed schema, nothing recurses on input.

use std::fmt;

/// A DER encoding problem, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerError {
    /// Byte offset into the whole envelope.
    pub offset: usize,
    /// What was expected or what is wrong.
    pub problem: String,
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.problem, self.offset)
    }
}

pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const UTC_TIME: u8 = 0x17;
pub const GENERALIZED_TIME: u8 = 0x18;
/// `[n]` context-specific, constructed.
pub const fn context(n: u8) -> u8 {
    0xA0 | n
}
/// `[n]` context-specific, primitive.
pub const fn context_primitive(n: u8) -> u8 {
    0x80 | n
}

/// One tag-length-value element, borrowing the input.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    /// The contents octets.
    pub value: &'a [u8],
    /// The whole element: tag, length and contents.
    pub raw: &'a [u8],
    /// Offset of the tag in the whole envelope.
    pub offset: usize,
}

impl<'a> Tlv<'a> {
    /// A reader over this element's contents.
    pub fn contents(&self) -> Reader<'a> {
        Reader {
            data: self.value,
            pos: self.offset + (self.raw.len() - self.value.len()),
        }
    }
}

/// A cursor over a sequence of DER elements.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn error(&self, problem: impl Into<String>) -> DerError {
        DerError {
            offset: self.pos,
            problem: problem.into(),
        }
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// The next element, whatever its tag.
    pub fn read_any(&mut self) -> Result<Tlv<'a>, DerError> {
        let d = self.data;
        let tag = *d
            .first()
            .ok_or_else(|| self.error("expected a DER element, found end of data"))?;
        if tag & 0x1F == 0x1F {
            return Err(self.error(format!(
                "high tag number form (tag byte 0x{tag:02x}) is not used by CMS"
            )));
        }
        let first = *d.get(1).ok_or_else(|| self.error("truncated length"))?;
        let (len, header) = if first < 0x80 {
            (first as usize, 2)
        } else if first == 0x80 {
            return Err(self.error("indefinite length (BER) where DER is required"));
        } else {
            let n = (first & 0x7F) as usize;
            if n > 4 {
                return Err(self.error(format!("length of {n} octets is absurd")));
            }
            let bytes = d
                .get(2..2 + n)
                .ok_or_else(|| self.error("truncated length"))?;
            if bytes[0] == 0 {
                return Err(self.error("length not in minimal form (DER)"));
            }
            let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
            if len < 0x80 {
                return Err(self.error("long-form length below 128 (not DER)"));
            }
            (len, 2 + n)
        };
        let end = header
            .checked_add(len)
            .filter(|e| *e <= d.len())
            .ok_or_else(|| {
                self.error(format!(
                    "element claims {len} bytes, only {} remain",
                    d.len().saturating_sub(header)
                ))
            })?;
        let tlv = Tlv {
            tag,
            value: &d[header..end],
            raw: &d[..end],
            offset: self.pos,
        };
        self.data = &d[end..];
        self.pos += end;
        Ok(tlv)
    }

    /// The next element, which must carry `tag`; `what` names it in the error.
    pub fn read(&mut self, tag: u8, what: &str) -> Result<Tlv<'a>, DerError> {
        match self.peek_tag() {
            Some(t) if t == tag => self.read_any(),
            Some(t) => Err(self.error(format!(
                "expected {what} (tag 0x{tag:02x}), found tag 0x{t:02x}"
            ))),
            None => Err(self.error(format!("expected {what}, found end of data"))),
        }
    }

    /// The next element if it carries `tag`.
    pub fn read_optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read_any().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Fails unless everything was consumed.
    pub fn finish(&self, what: &str) -> Result<(), DerError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!(
                "{} unexpected trailing bytes after {what}",
                self.data.len()
            )))
        }
    }
}

/// Encodes one element.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Encodes a constructed element from already encoded parts.
pub fn constructed(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

/// A DER `SET OF`: the encodings of the elements in ascending order (X.690 §11.6).
pub fn set_of(mut parts: Vec<Vec<u8>>) -> Vec<u8> {
    parts.sort();
    tlv(SET, &parts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536, 1 << 20] {
            let enc = tlv(OCTET_STRING, &vec![7u8; len]);
            let mut r = Reader::new(&enc);
            let t = r.read(OCTET_STRING, "octets").expect("own encoding");
            assert_eq!(t.value.len(), len);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn ber_and_truncation_are_refused() {
        assert!(Reader::new(&[0x30, 0x80, 0, 0])
            .read_any()
            .unwrap_err()
            .problem
            .contains("indefinite"));
        assert!(Reader::new(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5])
            .read_any()
            .unwrap_err()
            .problem
            .contains("not DER"));
        assert!(Reader::new(&[0x04, 0x05, 1])
            .read_any()
            .unwrap_err()
            .problem
            .contains("claims 5 bytes"));
        assert!(Reader::new(&[0x04, 0x85, 1, 1, 1, 1, 1])
            .read_any()
            .unwrap_err()
            .problem
            .contains("absurd"));
        assert!(Reader::new(&[0x1F, 0x01, 0x00]).read_any().is_err());
        assert!(Reader::new(&[]).read_any().is_err());
    }
}
