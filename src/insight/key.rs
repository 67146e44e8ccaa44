//! The keyed pseudonym that links a patient's messages into episodes without keeping who the
//! patient is: `HMAC-SHA256(K, fødselsnummer or D-nummer)` (research note
//! `../shared/research/health-community-indicators.md` §3 "Episode key").
//!
//! Input: the key file named by `[insight] key_file`, one key per line as `insight HEX` (at least
//! 32 bytes of key, i.e. 64 hex digits), `#` comments and blank lines allowed. Rotation with
//! overlap: a new key is *appended*; the last line is the newest and is the one new pseudonyms are
//! written with, and every key is tried when a message is linked to a patient already seen, so an
//! episode that started under the old key goes on under it. Remove an old key once every episode
//! it made is past retention.
//!
//! Failure modes ([`KeyError`]): unreadable file, readable by others than its owner (the key is a
//! secret: pseudonymised data are still personal data, research note §4), a malformed line, no key.
//! The identity number itself is never stored, logged or put in an error text.

use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;

/// The shortest key accepted (bytes): the HMAC-SHA256 block strength.
pub const MIN_KEY_BYTES: usize = 32;

/// Why the key file cannot be used. Texts name the file and the line, never a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("insight key file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "insight key file {path} has mode {mode:o}; it must be 0600 (readable by its owner only)"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("insight key file {path}, line {line}: {problem}")]
    Malformed {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("insight key file {path} holds no key (expected lines `insight HEX`)")]
    Empty { path: PathBuf },
}

/// The pseudonymisation keys, newest first.
pub struct Keys {
    keys: Vec<hmac::Key>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} key(s), values not shown)", self.keys.len())
    }
}

/// A patient pseudonym: the HMAC as 64 lower-case hex digits.
pub type Pseudonym = String;

impl Keys {
    /// Keys from raw key bytes, oldest first (as in the file). For tests and the lab.
    pub fn from_bytes(keys: &[&[u8]]) -> Keys {
        Keys {
            keys: keys
                .iter()
                .rev()
                .map(|k| hmac::Key::new(hmac::HMAC_SHA256, k))
                .collect(),
        }
    }

    /// Reads and checks the key file (see the module documentation).
    pub fn load(path: &Path) -> Result<Keys, KeyError> {
        check_mode(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let raw = parse(path, &text)?;
        let refs: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
        Ok(Keys::from_bytes(&refs))
    }

    /// Every problem with the key file, for `check-config`.
    pub fn problems(path: &Path) -> Vec<String> {
        match Keys::load(path) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.to_string()],
        }
    }

    /// The pseudonyms of an identity number under every key, newest first. `None` when `id` is not
    /// an 11-digit fødselsnummer/D-nummer (HIS 80601 `Ident/Id` of type FNR or DNR): nothing to link.
    pub fn pseudonyms(&self, id: &str) -> Option<Vec<Pseudonym>> {
        let id = id.trim();
        if id.len() != 11 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(
            self.keys
                .iter()
                .map(|k| hex::encode(hmac::sign(k, id.as_bytes()).as_ref()))
                .collect(),
        )
    }
}

#[cfg(unix)]
fn check_mode(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| KeyError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// The keys of a key file's text, oldest first.
fn parse(path: &Path, text: &str) -> Result<Vec<Vec<u8>>, KeyError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |problem: &str| KeyError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            problem: problem.to_owned(),
        };
        let mut words = line.split_whitespace();
        if words.next() != Some("insight") {
            return Err(bad("expected `insight HEX`"));
        }
        let Some(hex_key) = words.next() else {
            return Err(bad("the key is missing after `insight`"));
        };
        if words.next().is_some() {
            return Err(bad("more than one key on the line"));
        }
        let key = hex::decode(hex_key).map_err(|_| bad("the key is not hexadecimal"))?;
        if key.len() < MIN_KEY_BYTES {
            return Err(bad(&format!(
                "the key has {} bytes; at least {MIN_KEY_BYTES} are needed",
                key.len()
            )));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(KeyError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let p = dir.join("insight.key");
        std::fs::write(&p, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        p
    }

    #[test]
    fn newest_key_comes_first_and_every_key_is_tried() {
        let dir = tempfile::tempdir().unwrap();
        let old = "11".repeat(32);
        let new = "22".repeat(32);
        let p = write(
            dir.path(),
            &format!("# rotated 2026-12\ninsight {old}\n\ninsight {new}\n"),
            0o600,
        );
        let keys = Keys::load(&p).unwrap();
        let ps = keys.pseudonyms("01017000000").unwrap();
        assert_eq!(ps.len(), 2);
        let only_new = Keys::from_bytes(&[&[0x22; 32]]);
        assert_eq!(ps[0], only_new.pseudonyms("01017000000").unwrap()[0]);
        assert_ne!(ps[0], ps[1]);
        assert_eq!(ps[0].len(), 64);
        assert!(!ps[0].contains("01017000000"));
    }

    #[test]
    fn only_eleven_digit_numbers_are_linked() {
        let keys = Keys::from_bytes(&[&[7; 32]]);
        assert!(keys.pseudonyms("0101700000").is_none());
        assert!(keys.pseudonyms("0101700000X").is_none());
        assert!(keys.pseudonyms(" 01017000000 ").is_some());
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &format!("insight {}\n", "ab".repeat(32)), 0o644);
        assert!(matches!(
            Keys::load(&p),
            Err(KeyError::Permissions { mode: 0o644, .. })
        ));
    }

    #[test]
    fn malformed_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            ("secret abcd\n", "expected `insight HEX`"),
            ("insight zz\n", "not hexadecimal"),
            ("insight abcd\n", "at least 32"),
            ("insight\n", "missing"),
        ] {
            let p = write(dir.path(), text, 0o600);
            let e = Keys::load(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("line 1"), "{e}");
        }
        let p = write(dir.path(), "# nothing\n", 0o600);
        assert!(matches!(Keys::load(&p), Err(KeyError::Empty { .. })));
    }
}
