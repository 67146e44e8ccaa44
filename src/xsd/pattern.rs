//! XSD regular expressions (XML Schema Part 2, Appendix F) translated to the `regex` crate.
//!
//! Input: the value of a `pattern` facet. Output: a compiled [`regex::Regex`] that matches the
//! whole value (XSD patterns are implicitly anchored, §F.1), or an error naming the construct
//! that cannot be translated. Differences handled here: `^` and `$` are ordinary characters in
//! XSD; `\i`, `\c` (and `\I`, `\C`) are XML name classes; character class subtraction
//! `[a-z-[aeiou]]`; `\p{IsBlock}` block escapes are refused (UNSUPPORTED) rather than guessed.

use regex::Regex;

const NAME_START: &str = r":A-Z_a-z\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{2FF}\x{370}-\x{37D}\x{37F}-\x{1FFF}\x{200C}-\x{200D}\x{2070}-\x{218F}\x{2C00}-\x{2FEF}\x{3001}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFFD}\x{10000}-\x{EFFFF}";
const NAME_EXTRA: &str = r"\-.0-9\x{B7}\x{300}-\x{36F}\x{203F}-\x{2040}";

/// Translates and compiles an XSD pattern.
pub fn compile(xsd: &str) -> Result<Regex, String> {
    let body = translate(xsd)?;
    Regex::new(&format!("^(?:{body})$")).map_err(|e| format!("pattern '{xsd}': {e}"))
}

fn class_escape(c: char) -> Option<String> {
    Some(match c {
        'i' => format!("[{NAME_START}]"),
        'I' => format!("[^{NAME_START}]"),
        'c' => format!("[{NAME_START}{NAME_EXTRA}]"),
        'C' => format!("[^{NAME_START}{NAME_EXTRA}]"),
        // XSD \s is exactly the four XML whitespace characters; \d is Unicode Nd as in `regex`.
        's' => r"[ \t\n\r]".to_string(),
        'S' => r"[^ \t\n\r]".to_string(),
        'd' => r"\d".to_string(),
        'D' => r"\D".to_string(),
        'w' => r"[^\p{P}\p{Z}\p{C}]".to_string(),
        'W' => r"[\p{P}\p{Z}\p{C}]".to_string(),
        _ => return None,
    })
}

fn single_escape(c: char) -> Option<&'static str> {
    Some(match c {
        'n' => r"\n",
        'r' => r"\r",
        't' => r"\t",
        '\\' => r"\\",
        '|' => r"\|",
        '.' => r"\.",
        '?' => r"\?",
        '*' => r"\*",
        '+' => r"\+",
        '(' => r"\(",
        ')' => r"\)",
        '{' => r"\{",
        '}' => r"\}",
        '-' => r"\-",
        '[' => r"\[",
        ']' => r"\]",
        '^' => r"\^",
        '$' => r"\$",
        _ => return None,
    })
}

fn translate(p: &str) -> Result<String, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() * 2);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let (s, n) = escape(&chars, i, p)?;
                out.push_str(&s);
                i = n;
            }
            '[' => {
                let (s, n) = char_class(&chars, i, p)?;
                out.push_str(&s);
                i = n;
            }
            '^' | '$' => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            '.' => {
                // XSD '.' is any character but newline and carriage return.
                out.push_str(r"[^\n\r]");
                i += 1;
            }
            '(' => {
                // No (?...) groups in XSD: a '?' after '(' is an error there.
                out.push_str("(?:");
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn escape(chars: &[char], i: usize, p: &str) -> Result<(String, usize), String> {
    let Some(&e) = chars.get(i + 1) else {
        return Err(format!("pattern '{p}' ends with a backslash"));
    };
    if let Some(s) = class_escape(e) {
        return Ok((s, i + 2));
    }
    if let Some(s) = single_escape(e) {
        return Ok((s.to_string(), i + 2));
    }
    if e == 'p' || e == 'P' {
        let close = chars[i..]
            .iter()
            .position(|&c| c == '}')
            .map(|k| i + k)
            .ok_or_else(|| format!("pattern '{p}': unclosed \\{e}{{"))?;
        let name: String = chars[i + 3..close].iter().collect();
        if name.starts_with("Is") {
            return Err(format!(
                "UNSUPPORTED: block escape \\{e}{{{name}}} in pattern '{p}'"
            ));
        }
        return Ok((format!("\\{e}{{{name}}}"), close + 1));
    }
    Err(format!("pattern '{p}': unknown escape \\{e}"))
}

/// Translates `[...]` starting at `i` (which holds '['), including XSD subtraction `-[...]`.
fn char_class(chars: &[char], i: usize, p: &str) -> Result<(String, usize), String> {
    let mut out = String::from("[");
    let mut j = i + 1;
    if chars.get(j) == Some(&'^') {
        out.push('^');
        j += 1;
    }
    loop {
        let Some(&c) = chars.get(j) else {
            return Err(format!("pattern '{p}': unclosed character class"));
        };
        match c {
            ']' => {
                out.push(']');
                return Ok((out, j + 1));
            }
            '-' if chars.get(j + 1) == Some(&'[') => {
                let (sub, n) = char_class(chars, j + 1, p)?;
                out.push_str("--");
                out.push_str(&sub);
                j = n;
            }
            '\\' => {
                let (s, n) = escape(chars, j, p)?;
                // A class escape inside a class becomes a nested class, which `regex` accepts.
                out.push_str(&s);
                j = n;
            }
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
                j += 1;
            }
            _ => {
                out.push(c);
                j += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::compile;

    #[test]
    fn anchored_implicitly() {
        let re = compile("true|false").unwrap();
        assert!(re.is_match("true"));
        assert!(!re.is_match("truex"));
        assert!(!re.is_match("xfalse"));
    }

    #[test]
    fn oid_pattern_from_kith() {
        let re = compile(r"(\d+\.?)*\d+").unwrap();
        assert!(re.is_match("2.16.578.1.12.4.1.1.7615"));
        assert!(!re.is_match("2.16."));
        assert!(!re.is_match(""));
    }

    #[test]
    fn name_classes_and_subtraction() {
        let re = compile(r"\i\c*").unwrap();
        assert!(re.is_match("_a-b.c"));
        assert!(!re.is_match("1abc"));
        let re = compile("[a-z-[aeiou]]+").unwrap();
        assert!(re.is_match("bcd"));
        assert!(!re.is_match("bad"));
        let re = compile("a$b^").unwrap();
        assert!(re.is_match("a$b^"));
    }

    #[test]
    fn block_escapes_are_reported_unsupported() {
        assert!(compile(r"\p{IsBasicLatin}")
            .unwrap_err()
            .contains("UNSUPPORTED"));
    }
}
