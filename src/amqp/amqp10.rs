//! The AMQP 1.0 type system (OASIS AMQP 1.0, part 1 "Types"), as far as the gateway meets it: the
//! `x-amqp-1.0-properties` and `x-amqp-1.0-app-properties` headers by which RabbitMQ's AMQP 1.0
//! plugin (3.10) carries a 1.0 client's properties and application-properties to 0-9-1 consumers,
//! and by which a 0-9-1 publisher gives a 1.0 receiver its subject and application-properties
//! (`../shared/research/hnmsg-interop.md` §3; DESIGN §1).
//!
//! Input: the raw bytes of one encoded section. Output: a [`Value`] tree, or the typed sections
//! [`Properties10`] and the application-properties map; and the reverse, [`encode`]. Failure:
//! [`Amqp10Error`] saying what was found where; truncated, oversized, too deeply nested or unknown
//! encodings are errors, never panics (the decoder only reads lengths it has checked against the
//! bytes that remain, and nesting is bounded by [`MAX_DEPTH`]).
//!
//! Why our own: the two sections are small maps and lists of primitives. The one Rust
//! implementation of the whole type system (`serde_amqp` of fe2o3-amqp) comes with a serde data
//! model, a one-maintainer release train and a large dependency tree for what is ~300 lines here,
//! tested below by round trips, a property test over arbitrary values and a property test that
//! arbitrary bytes never panic (and by the fuzz target `amqp10`).

use std::fmt;

/// Deepest nesting of lists, maps, arrays and described values accepted when decoding.
pub const MAX_DEPTH: usize = 32;

/// Descriptor (ulong code) of the `properties` section (AMQP 1.0 §3.2.4).
pub const PROPERTIES_DESCRIPTOR: u64 = 0x73;
/// Descriptor (ulong code) of the `application-properties` section (AMQP 1.0 §3.2.5).
pub const APPLICATION_PROPERTIES_DESCRIPTOR: u64 = 0x74;

/// One AMQP 1.0 value. Floating-point values keep their IEEE 754 bits, so values compare exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    Ubyte(u8),
    Ushort(u16),
    Uint(u32),
    Ulong(u64),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    /// IEEE 754 binary32 bits.
    Float(u32),
    /// IEEE 754 binary64 bits.
    Double(u64),
    Decimal32([u8; 4]),
    Decimal64([u8; 8]),
    Decimal128([u8; 16]),
    Char(char),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
    Binary(Vec<u8>),
    String(String),
    Symbol(String),
    List(Vec<Value>),
    /// Pairs in wire order (AMQP maps keep their order; duplicate keys are the sender's problem,
    /// the first one wins for lookups).
    Map(Vec<(Value, Value)>),
    /// Elements of one type.
    Array(Vec<Value>),
    Described(Box<Value>, Box<Value>),
}

impl Value {
    /// The value as text: strings and symbols.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::Symbol(s) => Some(s),
            _ => None,
        }
    }

    /// The name of its type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Ubyte(_) => "ubyte",
            Value::Ushort(_) => "ushort",
            Value::Uint(_) => "uint",
            Value::Ulong(_) => "ulong",
            Value::Byte(_) => "byte",
            Value::Short(_) => "short",
            Value::Int(_) => "int",
            Value::Long(_) => "long",
            Value::Float(_) => "float",
            Value::Double(_) => "double",
            Value::Decimal32(_) => "decimal32",
            Value::Decimal64(_) => "decimal64",
            Value::Decimal128(_) => "decimal128",
            Value::Char(_) => "char",
            Value::Timestamp(_) => "timestamp",
            Value::Uuid(_) => "uuid",
            Value::Binary(_) => "binary",
            Value::String(_) => "string",
            Value::Symbol(_) => "symbol",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Array(_) => "array",
            Value::Described(..) => "described",
        }
    }
}

/// Why bytes are not the AMQP 1.0 value expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Amqp10Error {
    #[error("AMQP 1.0 encoding ends early at byte {at}: {needed} more bytes needed")]
    Truncated { at: usize, needed: usize },
    #[error("AMQP 1.0 encoding has unknown constructor 0x{code:02x} at byte {at}")]
    UnknownConstructor { code: u8, at: usize },
    #[error("AMQP 1.0 encoding nests deeper than {MAX_DEPTH} at byte {at}")]
    TooDeep { at: usize },
    #[error("AMQP 1.0 {what} at byte {at} is not valid UTF-8")]
    BadUtf8 { what: &'static str, at: usize },
    #[error("AMQP 1.0 char 0x{0:x} is not a Unicode scalar value")]
    BadChar(u32),
    #[error("AMQP 1.0 {what} at byte {at} declares {count} elements in {size} bytes")]
    BadCount {
        what: &'static str,
        at: usize,
        count: usize,
        size: usize,
    },
    #[error(
        "AMQP 1.0 {what} at byte {at} has {size} bytes of content but its elements use {used}"
    )]
    SizeMismatch {
        what: &'static str,
        at: usize,
        size: usize,
        used: usize,
    },
    #[error("{0} trailing bytes after the AMQP 1.0 value")]
    Trailing(usize),
    #[error("expected the AMQP 1.0 {expected} section, found {found}")]
    WrongSection {
        expected: &'static str,
        found: String,
    },
    #[error("AMQP 1.0 {field} is a {found}, expected {expected}")]
    WrongType {
        field: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("cannot encode an AMQP 1.0 array whose elements are not all one type ({0} and {1})")]
    MixedArray(&'static str, &'static str),
    #[error("AMQP 1.0 value too large to encode ({0} bytes)")]
    TooLarge(usize),
}

/// Decodes exactly one value filling `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, Amqp10Error> {
    let mut r = Reader { bytes, at: 0 };
    let v = r.value(0)?;
    match bytes.len() - r.at {
        0 => Ok(v),
        n => Err(Amqp10Error::Trailing(n)),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Amqp10Error> {
        let rest = self.bytes.len() - self.at;
        if n > rest {
            return Err(Amqp10Error::Truncated {
                at: self.at,
                needed: n - rest,
            });
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Amqp10Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Amqp10Error> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Amqp10Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Width of a size/count field for a variable or compound constructor.
    fn width(code: u8) -> usize {
        if code & 0x10 == 0 {
            1
        } else {
            4
        }
    }

    fn len(&mut self, width: usize) -> Result<usize, Amqp10Error> {
        Ok(if width == 1 {
            usize::from(self.u8()?)
        } else {
            self.u32()? as usize
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, Amqp10Error> {
        let at = self.at;
        let code = self.u8()?;
        if code == 0x00 {
            if depth >= MAX_DEPTH {
                return Err(Amqp10Error::TooDeep { at });
            }
            let descriptor = self.value(depth + 1)?;
            let value = self.value(depth + 1)?;
            return Ok(Value::Described(Box::new(descriptor), Box::new(value)));
        }
        self.body(code, at, depth)
    }

    /// The value after its (primitive) constructor `code`, read at `at`.
    fn body(&mut self, code: u8, at: usize, depth: usize) -> Result<Value, Amqp10Error> {
        Ok(match code {
            0x40 => Value::Null,
            0x41 => Value::Bool(true),
            0x42 => Value::Bool(false),
            0x56 => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(Amqp10Error::UnknownConstructor {
                        code: b,
                        at: at + 1,
                    })
                }
            },
            0x43 => Value::Uint(0),
            0x44 => Value::Ulong(0),
            0x50 => Value::Ubyte(self.u8()?),
            0x51 => Value::Byte(i8::from_be_bytes(self.array()?)),
            0x52 => Value::Uint(u32::from(self.u8()?)),
            0x53 => Value::Ulong(u64::from(self.u8()?)),
            0x54 => Value::Int(i32::from(i8::from_be_bytes(self.array()?))),
            0x55 => Value::Long(i64::from(i8::from_be_bytes(self.array()?))),
            0x60 => Value::Ushort(u16::from_be_bytes(self.array()?)),
            0x61 => Value::Short(i16::from_be_bytes(self.array()?)),
            0x70 => Value::Uint(self.u32()?),
            0x71 => Value::Int(i32::from_be_bytes(self.array()?)),
            0x72 => Value::Float(self.u32()?),
            0x73 => {
                let c = self.u32()?;
                Value::Char(char::from_u32(c).ok_or(Amqp10Error::BadChar(c))?)
            }
            0x74 => Value::Decimal32(self.array()?),
            0x80 => Value::Ulong(u64::from_be_bytes(self.array()?)),
            0x81 => Value::Long(i64::from_be_bytes(self.array()?)),
            0x82 => Value::Double(u64::from_be_bytes(self.array()?)),
            0x83 => Value::Timestamp(i64::from_be_bytes(self.array()?)),
            0x84 => Value::Decimal64(self.array()?),
            0x94 => Value::Decimal128(self.array()?),
            0x98 => Value::Uuid(self.array()?),
            0xa0 | 0xb0 => {
                let n = self.len(Self::width(code))?;
                Value::Binary(self.take(n)?.to_vec())
            }
            0xa1 | 0xb1 | 0xa3 | 0xb3 => {
                let n = self.len(Self::width(code))?;
                let start = self.at;
                let what = if code & 0x02 == 0 { "string" } else { "symbol" };
                let s = std::str::from_utf8(self.take(n)?)
                    .map_err(|_| Amqp10Error::BadUtf8 { what, at: start })?
                    .to_owned();
                if what == "string" {
                    Value::String(s)
                } else {
                    Value::Symbol(s)
                }
            }
            0x45 => Value::List(Vec::new()),
            0xc0 | 0xd0 | 0xc1 | 0xd1 => {
                if depth >= MAX_DEPTH {
                    return Err(Amqp10Error::TooDeep { at });
                }
                let w = Self::width(code);
                let size = self.len(w)?;
                let what = if code & 0x01 == 0 { "list" } else { "map" };
                if size < w {
                    return Err(Amqp10Error::BadCount {
                        what,
                        at,
                        count: 0,
                        size,
                    });
                }
                // The size counts the count field and the elements.
                let end_check = self.bytes.len() - self.at;
                if size > end_check {
                    return Err(Amqp10Error::Truncated {
                        at: self.at,
                        needed: size - end_check,
                    });
                }
                let start = self.at;
                let count = self.len(w)?;
                // Every element takes at least one byte.
                if count > size - w || (what == "map" && count % 2 != 0) {
                    return Err(Amqp10Error::BadCount {
                        what,
                        at,
                        count,
                        size,
                    });
                }
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                let used = self.at - start;
                if used != size {
                    return Err(Amqp10Error::SizeMismatch {
                        what,
                        at,
                        size,
                        used,
                    });
                }
                if what == "list" {
                    Value::List(items)
                } else {
                    let mut pairs = Vec::with_capacity(count / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Value::Map(pairs)
                }
            }
            0xe0 | 0xf0 => {
                if depth >= MAX_DEPTH {
                    return Err(Amqp10Error::TooDeep { at });
                }
                let w = Self::width(code);
                let size = self.len(w)?;
                let rest = self.bytes.len() - self.at;
                if size > rest {
                    return Err(Amqp10Error::Truncated {
                        at: self.at,
                        needed: size - rest,
                    });
                }
                let start = self.at;
                let count = self.len(w)?;
                let ctor_at = self.at;
                let mut ctor = self.u8()?;
                let mut descriptor = None;
                if ctor == 0x00 {
                    // Every element carries a copy of the descriptor: only the small descriptors
                    // AMQP defines (a ulong code or a symbol) keep that bounded.
                    let d = self.value(depth + 1)?;
                    match &d {
                        Value::Ulong(_) => {}
                        Value::Symbol(s) if s.len() <= 255 => {}
                        other => {
                            return Err(Amqp10Error::WrongType {
                                field: format!("descriptor of the array at byte {at}"),
                                found: other.type_name(),
                                expected: "a ulong or a symbol of at most 255 bytes",
                            })
                        }
                    }
                    descriptor = Some(d);
                    ctor = self.u8()?;
                }
                if ctor == 0x00 {
                    return Err(Amqp10Error::UnknownConstructor {
                        code: ctor,
                        at: ctor_at,
                    });
                }
                // Elements of most types take a byte or more each; zero-width ones (null, true,
                // false, the zero forms) are held to the same bound, so memory follows input size.
                if count > size {
                    return Err(Amqp10Error::BadCount {
                        what: "array",
                        at,
                        count,
                        size,
                    });
                }
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    let v = self.body(ctor, self.at, depth + 1)?;
                    items.push(match &descriptor {
                        Some(d) => Value::Described(Box::new(d.clone()), Box::new(v)),
                        None => v,
                    });
                }
                let used = self.at - start;
                if used != size {
                    return Err(Amqp10Error::SizeMismatch {
                        what: "array",
                        at,
                        size,
                        used,
                    });
                }
                Value::Array(items)
            }
            _ => return Err(Amqp10Error::UnknownConstructor { code, at }),
        })
    }
}

/// Encodes `v` in its smallest form.
pub fn encode(v: &Value) -> Result<Vec<u8>, Amqp10Error> {
    let mut out = Vec::new();
    write(v, &mut out)?;
    Ok(out)
}

fn write(v: &Value, out: &mut Vec<u8>) -> Result<(), Amqp10Error> {
    match v {
        Value::Null => out.push(0x40),
        Value::Bool(true) => out.push(0x41),
        Value::Bool(false) => out.push(0x42),
        Value::Uint(0) => out.push(0x43),
        Value::Uint(n) if *n < 256 => out.extend([0x52, *n as u8]),
        Value::Ulong(0) => out.push(0x44),
        Value::Ulong(n) if *n < 256 => out.extend([0x53, *n as u8]),
        Value::Int(n) if i8::try_from(*n).is_ok() => out.extend([0x54, *n as i8 as u8]),
        Value::Long(n) if i8::try_from(*n).is_ok() => out.extend([0x55, *n as i8 as u8]),
        Value::List(items) if items.is_empty() => out.push(0x45),
        Value::Described(d, v) => {
            out.push(0x00);
            write(d, out)?;
            write(v, out)?;
        }
        Value::Binary(b) => variable(0xa0, b, out)?,
        Value::String(s) => variable(0xa1, s.as_bytes(), out)?,
        Value::Symbol(s) => variable(0xa3, s.as_bytes(), out)?,
        Value::List(items) => {
            let mut body = Vec::new();
            for i in items {
                write(i, &mut body)?;
            }
            compound(0xc0, items.len(), &body, out)?;
        }
        Value::Map(pairs) => {
            let mut body = Vec::new();
            for (k, v) in pairs {
                write(k, &mut body)?;
                write(v, &mut body)?;
            }
            compound(0xc1, pairs.len() * 2, &body, out)?;
        }
        Value::Array(items) => write_array(items, out)?,
        fixed => {
            let code = wide_constructor(fixed);
            out.push(code);
            write_fixed(fixed, out);
        }
    }
    Ok(())
}

fn variable(small: u8, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), Amqp10Error> {
    if let Ok(n) = u8::try_from(bytes.len()) {
        out.extend([small, n]);
    } else {
        out.push(small | 0x10);
        out.extend(len32(bytes.len())?.to_be_bytes());
    }
    out.extend_from_slice(bytes);
    Ok(())
}

fn len32(n: usize) -> Result<u32, Amqp10Error> {
    u32::try_from(n).map_err(|_| Amqp10Error::TooLarge(n))
}

fn compound(small: u8, count: usize, body: &[u8], out: &mut Vec<u8>) -> Result<(), Amqp10Error> {
    match (u8::try_from(body.len() + 1), u8::try_from(count)) {
        (Ok(size), Ok(count)) => out.extend([small, size, count]),
        _ => {
            out.push(small | 0x10);
            out.extend(len32(body.len() + 4)?.to_be_bytes());
            out.extend(len32(count)?.to_be_bytes());
        }
    }
    out.extend_from_slice(body);
    Ok(())
}

/// The constructor an element of this type has in an array (the full-width form, which every value
/// of the type fits), and for fixed-width values outside arrays.
fn wide_constructor(v: &Value) -> u8 {
    match v {
        Value::Null => 0x40,
        Value::Bool(_) => 0x56,
        Value::Ubyte(_) => 0x50,
        Value::Byte(_) => 0x51,
        Value::Ushort(_) => 0x60,
        Value::Short(_) => 0x61,
        Value::Uint(_) => 0x70,
        Value::Int(_) => 0x71,
        Value::Float(_) => 0x72,
        Value::Char(_) => 0x73,
        Value::Decimal32(_) => 0x74,
        Value::Ulong(_) => 0x80,
        Value::Long(_) => 0x81,
        Value::Double(_) => 0x82,
        Value::Timestamp(_) => 0x83,
        Value::Decimal64(_) => 0x84,
        Value::Decimal128(_) => 0x94,
        Value::Uuid(_) => 0x98,
        Value::Binary(_) => 0xb0,
        Value::String(_) => 0xb1,
        Value::Symbol(_) => 0xb3,
        Value::List(_) => 0xd0,
        Value::Map(_) => 0xd1,
        Value::Array(_) => 0xf0,
        Value::Described(..) => 0x00,
    }
}

/// A fixed-width value's bytes after its constructor.
fn write_fixed(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::Ubyte(n) => out.push(*n),
        Value::Byte(n) => out.extend(n.to_be_bytes()),
        Value::Ushort(n) => out.extend(n.to_be_bytes()),
        Value::Short(n) => out.extend(n.to_be_bytes()),
        Value::Uint(n) | Value::Float(n) => out.extend(n.to_be_bytes()),
        Value::Int(n) => out.extend(n.to_be_bytes()),
        Value::Char(c) => out.extend(u32::from(*c).to_be_bytes()),
        Value::Decimal32(b) => out.extend(b),
        Value::Ulong(n) | Value::Double(n) => out.extend(n.to_be_bytes()),
        Value::Long(n) | Value::Timestamp(n) => out.extend(n.to_be_bytes()),
        Value::Decimal64(b) => out.extend(b),
        Value::Decimal128(b) | Value::Uuid(b) => out.extend(b),
        _ => {}
    }
}

/// An array: one constructor (the elements' full-width form), then each element without one.
fn write_array(items: &[Value], out: &mut Vec<u8>) -> Result<(), Amqp10Error> {
    let mut body = Vec::new();
    let (descriptor, first) = match items.first() {
        Some(Value::Described(d, v)) => (Some(d.as_ref()), v.as_ref()),
        Some(v) => (None, v),
        // An empty array still needs an element type; null is the least surprising.
        None => (None, &Value::Null),
    };
    if let Some(d) = descriptor {
        body.push(0x00);
        write(d, &mut body)?;
    }
    let code = wide_constructor(first);
    body.push(code);
    for item in items {
        let inner = match (descriptor, item) {
            (Some(d), Value::Described(d2, v)) if d2.as_ref() == d => v.as_ref(),
            (None, v) if !matches!(v, Value::Described(..)) => v,
            (_, other) => {
                return Err(Amqp10Error::MixedArray(
                    first.type_name(),
                    other.type_name(),
                ))
            }
        };
        if wide_constructor(inner) != code {
            return Err(Amqp10Error::MixedArray(
                first.type_name(),
                inner.type_name(),
            ));
        }
        match inner {
            Value::Null => {}
            Value::Binary(b) => {
                body.extend(len32(b.len())?.to_be_bytes());
                body.extend_from_slice(b);
            }
            Value::String(s) | Value::Symbol(s) => {
                body.extend(len32(s.len())?.to_be_bytes());
                body.extend_from_slice(s.as_bytes());
            }
            Value::List(_) | Value::Map(_) | Value::Array(_) => {
                // Full-width form, minus its constructor byte.
                let mut one = Vec::new();
                write_wide_compound(inner, &mut one)?;
                body.extend_from_slice(&one[1..]);
            }
            fixed => write_fixed(fixed, &mut body),
        }
    }
    let count = len32(items.len())?;
    match (u8::try_from(body.len() + 1), u8::try_from(count)) {
        (Ok(size), Ok(count)) => out.extend([0xe0, size, count]),
        _ => {
            out.push(0xf0);
            out.extend(len32(body.len() + 4)?.to_be_bytes());
            out.extend(count.to_be_bytes());
        }
    }
    out.extend_from_slice(&body);
    Ok(())
}

/// A list, map or array in its 32-bit form (as array elements must be).
fn write_wide_compound(v: &Value, out: &mut Vec<u8>) -> Result<(), Amqp10Error> {
    let mut small = Vec::new();
    write(v, &mut small)?;
    // Re-frame the small form's content with 32-bit size and count.
    let (count, body): (usize, &[u8]) = match small[0] {
        0x45 => (0, &[]),
        0xc0 | 0xc1 | 0xe0 => (usize::from(small[2]), &small[3..]),
        _ => (
            u32::from_be_bytes([small[5], small[6], small[7], small[8]]) as usize,
            &small[9..],
        ),
    };
    out.push(wide_constructor(v));
    out.extend(len32(body.len() + 4)?.to_be_bytes());
    out.extend(len32(count)?.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// The message-level fields of the `properties` section the gateway reads and writes
/// (AMQP 1.0 §3.2.4; the others are kept out of the way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties10 {
    /// A string, or the text of a uuid/ulong/binary id.
    pub message_id: Option<String>,
    pub to: Option<String>,
    /// HN.Msg's message function ("Label").
    pub subject: Option<String>,
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
}

/// The section's descriptor: the ulong code, or its symbolic name.
fn is_section(d: &Value, code: u64, name: &str) -> bool {
    match d {
        Value::Ulong(c) => *c == code,
        Value::Symbol(s) => s == name,
        _ => false,
    }
}

fn section(bytes: &[u8], code: u64, name: &'static str) -> Result<Value, Amqp10Error> {
    match decode(bytes)? {
        Value::Described(d, v) if is_section(&d, code, name) => Ok(*v),
        other => Err(Amqp10Error::WrongSection {
            expected: name,
            found: match other {
                Value::Described(d, _) => format!("a value described by {d:?}"),
                v => format!("an undescribed {}", v.type_name()),
            },
        }),
    }
}

/// A message id as text: AMQP allows string, uuid, ulong and binary ids (§3.2.11).
fn id_text(v: &Value, field: &str) -> Result<Option<String>, Amqp10Error> {
    Ok(match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Uuid(u) => Some(uuid::Uuid::from_bytes(*u).to_string()),
        Value::Ulong(n) => Some(n.to_string()),
        Value::Binary(b) => {
            Some(
                String::from_utf8(b.clone()).map_err(|_| Amqp10Error::WrongType {
                    field: field.into(),
                    found: "binary (not UTF-8)",
                    expected: "a string or uuid id",
                })?,
            )
        }
        other => {
            return Err(Amqp10Error::WrongType {
                field: field.into(),
                found: other.type_name(),
                expected: "a string or uuid id",
            })
        }
    })
}

fn text_field(v: &Value, field: &str) -> Result<Option<String>, Amqp10Error> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) | Value::Symbol(s) => Ok(Some(s.clone())),
        other => Err(Amqp10Error::WrongType {
            field: field.into(),
            found: other.type_name(),
            expected: "a string",
        }),
    }
}

impl Properties10 {
    /// Reads an encoded `properties` section (e.g. RabbitMQ's `x-amqp-1.0-properties` header).
    pub fn decode(bytes: &[u8]) -> Result<Self, Amqp10Error> {
        let fields = match section(bytes, PROPERTIES_DESCRIPTOR, "amqp:properties:list")? {
            Value::List(f) => f,
            other => {
                return Err(Amqp10Error::WrongType {
                    field: "properties".into(),
                    found: other.type_name(),
                    expected: "a list",
                })
            }
        };
        let get = |i: usize| fields.get(i).unwrap_or(&Value::Null);
        Ok(Properties10 {
            message_id: id_text(get(0), "properties.message-id")?,
            to: text_field(get(2), "properties.to")?,
            subject: text_field(get(3), "properties.subject")?,
            reply_to: text_field(get(4), "properties.reply-to")?,
            correlation_id: id_text(get(5), "properties.correlation-id")?,
            content_type: text_field(get(6), "properties.content-type")?,
        })
    }

    /// The encoded `properties` section: ids as strings, content-type as a symbol, trailing nulls
    /// left out (as the specification allows).
    pub fn encode(&self) -> Result<Vec<u8>, Amqp10Error> {
        let s = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        let mut fields = vec![
            s(&self.message_id),
            Value::Null, // user-id: never set (RabbitMQ would check it against the connection)
            s(&self.to),
            s(&self.subject),
            s(&self.reply_to),
            s(&self.correlation_id),
            self.content_type.clone().map_or(Value::Null, Value::Symbol),
        ];
        while fields.last() == Some(&Value::Null) {
            fields.pop();
        }
        encode(&Value::Described(
            Box::new(Value::Ulong(PROPERTIES_DESCRIPTOR)),
            Box::new(Value::List(fields)),
        ))
    }
}

/// Reads an encoded `application-properties` section (e.g. RabbitMQ's `x-amqp-1.0-app-properties`
/// header): its keys must be strings (AMQP 1.0 §3.2.5); values are left as they are.
pub fn decode_application_properties(bytes: &[u8]) -> Result<Vec<(String, Value)>, Amqp10Error> {
    let pairs = match section(
        bytes,
        APPLICATION_PROPERTIES_DESCRIPTOR,
        "amqp:application-properties:map",
    )? {
        Value::Map(p) => p,
        other => {
            return Err(Amqp10Error::WrongType {
                field: "application-properties".into(),
                found: other.type_name(),
                expected: "a map",
            })
        }
    };
    pairs
        .into_iter()
        .map(|(k, v)| match k {
            Value::String(k) => Ok((k, v)),
            other => Err(Amqp10Error::WrongType {
                field: "application-properties key".into(),
                found: other.type_name(),
                expected: "a string",
            }),
        })
        .collect()
}

/// The encoded `application-properties` section with every value a string, as Helsenorge.Messaging
/// writes and reads them (`research/hnmsg-interop.md` §1).
pub fn encode_application_properties(pairs: &[(&str, String)]) -> Result<Vec<u8>, Amqp10Error> {
    encode(&Value::Described(
        Box::new(Value::Ulong(APPLICATION_PROPERTIES_DESCRIPTOR)),
        Box::new(Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (Value::String((*k).into()), Value::String(v.clone())))
                .collect(),
        )),
    ))
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) | Value::Symbol(s) => f.write_str(s),
            Value::Ubyte(n) => write!(f, "{n}"),
            Value::Ushort(n) => write!(f, "{n}"),
            Value::Uint(n) => write!(f, "{n}"),
            Value::Ulong(n) => write!(f, "{n}"),
            Value::Byte(n) => write!(f, "{n}"),
            Value::Short(n) => write!(f, "{n}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Long(n) => write!(f, "{n}"),
            other => write!(f, "<{}>", other.type_name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What RabbitMQ 3.10.8's plugin put in `x-amqp-1.0-app-properties` for a python-qpid-proton
    /// sender with string application-properties (hand-assembled from the specification's tables).
    fn proton_app_props() -> Vec<u8> {
        let mut map = Vec::new();
        for (k, v) in [("fromHerId", "82001"), ("toHerId", "81001")] {
            map.extend([0xa1, k.len() as u8]);
            map.extend(k.as_bytes());
            map.extend([0xa1, v.len() as u8]);
            map.extend(v.as_bytes());
        }
        let mut out = vec![0x00, 0x53, 0x74, 0xc1, (map.len() + 1) as u8, 4];
        out.extend(map);
        out
    }

    #[test]
    fn reads_application_properties_as_the_plugin_passes_them() {
        let p = decode_application_properties(&proton_app_props()).unwrap();
        assert_eq!(
            p,
            vec![
                ("fromHerId".into(), Value::String("82001".into())),
                ("toHerId".into(), Value::String("81001".into())),
            ]
        );
    }

    #[test]
    fn writes_what_it_reads() {
        let bytes = encode_application_properties(&[
            ("fromHerId", "82001".into()),
            ("toHerId", "81001".into()),
        ])
        .unwrap();
        assert_eq!(bytes, proton_app_props());
        let p = Properties10 {
            message_id: Some("3f2504e0-4f89-11d3-9a0c-0305e82c3301".into()),
            to: Some("81001_async".into()),
            subject: Some("DIALOG_FORESPORSEL".into()),
            reply_to: None,
            correlation_id: None,
            content_type: Some("application/pkcs7-mime; smime-type=signed-data".into()),
        };
        assert_eq!(Properties10::decode(&p.encode().unwrap()).unwrap(), p);
    }

    #[test]
    fn uuid_and_symbolic_descriptors() {
        // properties with a uuid message-id and the symbolic descriptor.
        let v = Value::Described(
            Box::new(Value::Symbol("amqp:properties:list".into())),
            Box::new(Value::List(vec![
                Value::Uuid([0x11; 16]),
                Value::Null,
                Value::Null,
                Value::String("APPREC".into()),
            ])),
        );
        let p = Properties10::decode(&encode(&v).unwrap()).unwrap();
        assert_eq!(
            p.message_id.as_deref(),
            Some("11111111-1111-1111-1111-111111111111")
        );
        assert_eq!(p.subject.as_deref(), Some("APPREC"));
    }

    #[test]
    fn wrong_sections_and_garbage_are_named() {
        let e = Properties10::decode(&proton_app_props()).unwrap_err();
        assert!(e.to_string().contains("amqp:properties:list"), "{e}");
        assert_eq!(
            decode(&[0xa1, 5, b'a']).unwrap_err(),
            Amqp10Error::Truncated { at: 2, needed: 4 }
        );
        assert_eq!(
            decode(&[0x99]).unwrap_err(),
            Amqp10Error::UnknownConstructor { code: 0x99, at: 0 }
        );
        assert_eq!(decode(&[0x40, 0x40]).unwrap_err(), Amqp10Error::Trailing(1));
        assert!(matches!(
            decode(&[0xa1, 1, 0xff]).unwrap_err(),
            Amqp10Error::BadUtf8 { .. }
        ));
        // A list claiming 200 elements in 2 bytes.
        assert!(matches!(
            decode(&[0xc0, 2, 200, 0x40]).unwrap_err(),
            Amqp10Error::BadCount { .. }
        ));
        // A list whose size says 3 but whose one element takes 1.
        assert!(matches!(
            decode(&[0xc0, 3, 1, 0x40, 0x40]).unwrap_err(),
            Amqp10Error::SizeMismatch { .. }
        ));
        // A 32-bit list claiming 4 GiB.
        assert!(matches!(
            decode(&[0xd0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1]).unwrap_err(),
            Amqp10Error::Truncated { .. }
        ));
        let deep: Vec<u8> = std::iter::repeat_n([0x00, 0x40], 100).flatten().collect();
        assert!(matches!(
            decode(&deep).unwrap_err(),
            Amqp10Error::TooDeep { .. }
        ));
        let e = decode_application_properties(
            &encode(&Value::Described(
                Box::new(Value::Ulong(0x74)),
                Box::new(Value::Map(vec![(Value::Int(1), Value::Null)])),
            ))
            .unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("key is a int"), "{e}");
    }

    #[test]
    fn arrays_of_every_width() {
        for v in [
            Value::Array(vec![Value::Symbol("a".into()), Value::Symbol("bc".into())]),
            Value::Array(vec![Value::Int(1), Value::Int(-70000)]),
            Value::Array(vec![Value::Null, Value::Null]),
            Value::Array(vec![
                Value::List(vec![Value::Bool(true)]),
                Value::List(vec![]),
            ]),
            Value::Array(vec![
                Value::Described(
                    Box::new(Value::Ulong(7)),
                    Box::new(Value::String("x".into())),
                ),
                Value::Described(
                    Box::new(Value::Ulong(7)),
                    Box::new(Value::String("y".into())),
                ),
            ]),
            Value::Array(vec![]),
        ] {
            assert_eq!(decode(&encode(&v).unwrap()).unwrap(), v, "{v:?}");
        }
        assert!(matches!(
            encode(&Value::Array(vec![Value::Int(1), Value::Long(1)])),
            Err(Amqp10Error::MixedArray(..))
        ));
        // 200 nulls claimed in a 2-byte array: refused, as is a large descriptor every element
        // would copy.
        assert!(matches!(
            decode(&[0xe0, 2, 200, 0x40]).unwrap_err(),
            Amqp10Error::BadCount { .. }
        ));
        let mut big = vec![0xf0, 0, 0, 1, 9, 0, 0, 0, 1, 0x00, 0xb0, 0, 0, 0x01, 0x00];
        big.extend([0u8; 256]);
        big.push(0x40);
        assert!(matches!(
            decode(&big).unwrap_err(),
            Amqp10Error::WrongType { .. }
        ));
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u8>().prop_map(Value::Ubyte),
            any::<u16>().prop_map(Value::Ushort),
            any::<u32>().prop_map(Value::Uint),
            any::<u64>().prop_map(Value::Ulong),
            any::<i8>().prop_map(Value::Byte),
            any::<i16>().prop_map(Value::Short),
            any::<i32>().prop_map(Value::Int),
            any::<i64>().prop_map(Value::Long),
            any::<u32>().prop_map(Value::Float),
            any::<u64>().prop_map(Value::Double),
            any::<[u8; 4]>().prop_map(Value::Decimal32),
            any::<[u8; 8]>().prop_map(Value::Decimal64),
            any::<[u8; 16]>().prop_map(Value::Decimal128),
            any::<char>().prop_map(Value::Char),
            any::<i64>().prop_map(Value::Timestamp),
            any::<[u8; 16]>().prop_map(Value::Uuid),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Binary),
            ".{0,40}".prop_map(Value::String),
            "[a-z:-]{0,20}".prop_map(Value::Symbol),
            proptest::collection::vec(any::<i32>(), 0..5)
                .prop_map(|v| Value::Array(v.into_iter().map(Value::Int).collect())),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                proptest::collection::vec((inner.clone(), inner.clone()), 0..6)
                    .prop_map(Value::Map),
                (inner.clone(), inner)
                    .prop_map(|(d, v)| Value::Described(Box::new(d), Box::new(v))),
            ]
        })
    }

    proptest! {
        #[test]
        fn every_value_survives_a_round_trip(v in value()) {
            prop_assert_eq!(decode(&encode(&v).unwrap()).unwrap(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let _ = Properties10::decode(&bytes);
            let _ = decode_application_properties(&bytes);
        }

        #[test]
        fn a_valid_value_cut_short_is_an_error(v in value(), cut in any::<prop::sample::Index>()) {
            let bytes = encode(&v).unwrap();
            let n = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..n]).is_err());
        }
    }
}
