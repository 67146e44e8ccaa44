//! Who may use the console: the credentials of `[console]` and the check of one request.
//!
//! Input: the `Authorization` header of a request. Output: [`Who`] (a name for the audit log) or
//! why not. Two kinds, either or both:
//! - a **bearer token** (`token_file`, one line of at least 32 characters): compared as SHA-256
//!   digests with `subtle`'s constant-time equality, so neither its length nor a prefix leaks;
//! - **user names with argon2 hashes** (`password_file`, lines `name:$argon2id$v=19$…`, PHC strings
//!   as `argon2 SALT -id -e` prints them) for HTTP Basic. Argon2 because it is the winner of the
//!   password hashing competition and memory-hard (a leaked file is expensive to attack); the
//!   RustCrypto `argon2` crate verifies in constant time. A verification costs tens of
//!   milliseconds by design, so at most two run at once, on the blocking pool.
//!
//! An unknown user name costs the same as a wrong password (a fixed hash is checked), so names
//! cannot be probed by timing.

use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use base64ct::Encoding as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ConsoleConfig;

/// Shortest bearer token accepted: 32 characters (e.g. `openssl rand -hex 32` gives 64).
pub const MIN_TOKEN_LEN: usize = 32;

/// A user name for the audit log: `[A-Za-z0-9._-]{1,64}`, or `bearer-token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who(String);

impl Who {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a request was not let in (said to the client in a 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// A scheme this console does not take, or a malformed header.
    Malformed,
    /// Wrong token, user or password.
    Wrong,
}

impl Refusal {
    pub fn text(self) -> &'static str {
        match self {
            Refusal::Missing => "credentials required: this console is bound beyond localhost or has credentials configured; send Authorization: Bearer <token> or Basic",
            Refusal::Malformed => "the Authorization header is not Bearer <token> or Basic <base64 name:password>",
            Refusal::Wrong => "wrong credentials",
        }
    }
}

struct User {
    name: String,
    /// The PHC string, checked at load to parse as an argon2 hash.
    phc: String,
}

/// The configured credentials (at least one kind).
pub struct Credentials {
    token_sha256: Option<[u8; 32]>,
    users: Vec<User>,
    verifying: tokio::sync::Semaphore,
}

/// Checked against when the user name is unknown, so that case costs a full verification too: a
/// well-formed argon2id hash with the crate's default parameters (its result is ignored).
const DECOY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$aGVsc2VtZWxkaW5nLWNvbnNvbGU$Zt9Rl0xv8iUiKHtFyb6XTi7bUMxPgcgZMB9S0bl5i7g";

fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN || token.contains(char::is_whitespace) {
        return Err(format!(
            "{}: the token must be one line of at least {MIN_TOKEN_LEN} characters without spaces (e.g. `openssl rand -hex 32 > {}`)",
            path.display(),
            path.display()
        ));
    }
    check_private(path)?;
    Ok(token.to_owned())
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: readable by group or others (mode {:o}); a token is a secret: chmod 600 it",
            path.display(),
            mode & 0o777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), String> {
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn read_users(path: &Path) -> Result<Vec<User>, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    let mut users = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let Some((name, phc)) = line.split_once(':') else {
            problems.push(format!("{at}: expected name:$argon2id$… (a PHC string)"));
            continue;
        };
        if !valid_name(name) {
            problems.push(format!("{at}: user name must be 1-64 of A-Z a-z 0-9 . _ -"));
            continue;
        }
        match PasswordHash::new(phc) {
            Ok(h) if h.algorithm.as_str().starts_with("argon2") => {}
            Ok(h) => {
                problems.push(format!(
                    "{at}: hash algorithm {} is not argon2 (argon2id, argon2i or argon2d)",
                    h.algorithm
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!("{at}: not a PHC hash string: {e}"));
                continue;
            }
        }
        if users.iter().any(|u: &User| u.name == name) {
            problems.push(format!("{at}: user {name} appears twice"));
            continue;
        }
        users.push(User {
            name: name.to_owned(),
            phc: phc.to_owned(),
        });
    }
    if users.is_empty() && problems.is_empty() {
        problems.push(format!("{}: no users in the file", path.display()));
    }
    if problems.is_empty() {
        Ok(users)
    } else {
        Err(problems)
    }
}

impl Credentials {
    /// Loads what `[console]` names; `Ok(None)` when nothing is configured.
    pub fn load(cfg: &ConsoleConfig) -> Result<Option<Credentials>, Vec<String>> {
        if !cfg.has_credentials() {
            return Ok(None);
        }
        let mut problems = Vec::new();
        let token = match &cfg.token_file {
            Some(p) => match read_token(p) {
                Ok(t) => Some(Sha256::digest(t.as_bytes()).into()),
                Err(e) => {
                    problems.push(e);
                    None
                }
            },
            None => None,
        };
        let users = match &cfg.password_file {
            Some(p) => read_users(p).unwrap_or_else(|ps| {
                problems.extend(ps);
                Vec::new()
            }),
            None => Vec::new(),
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Some(Credentials {
            token_sha256: token,
            users,
            verifying: tokio::sync::Semaphore::new(2),
        }))
    }

    /// The `WWW-Authenticate` challenge of a 401: Basic when there are users (the browser then asks
    /// for a name and password), else Bearer (which a browser shows as the refusal page).
    pub fn challenge(&self) -> &'static str {
        if self.users.is_empty() {
            "Bearer realm=\"helsemelding console\""
        } else {
            "Basic realm=\"helsemelding console\", charset=\"UTF-8\""
        }
    }

    /// What is wrong with the configured credential files, as (config key, reason), for
    /// `check-config` and `serve`.
    pub fn problems(cfg: &ConsoleConfig) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(p) = &cfg.token_file {
            if let Err(e) = read_token(p) {
                out.push(("console.token_file", e));
            }
        }
        if let Some(p) = &cfg.password_file {
            if let Err(es) = read_users(p) {
                out.extend(es.into_iter().map(|e| ("console.password_file", e)));
            }
        }
        out
    }

    /// Checks an `Authorization` header value.
    pub async fn check(self: &Arc<Self>, header: Option<&[u8]>) -> Result<Who, Refusal> {
        let header = header.ok_or(Refusal::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| Refusal::Malformed)?;
        let (scheme, value) = header.trim().split_once(' ').ok_or(Refusal::Malformed)?;
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            let Some(expected) = &self.token_sha256 else {
                return Err(Refusal::Wrong);
            };
            let given: [u8; 32] = Sha256::digest(value.as_bytes()).into();
            return if bool::from(given.ct_eq(expected)) {
                Ok(Who("bearer-token".into()))
            } else {
                Err(Refusal::Wrong)
            };
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(Refusal::Malformed);
        }
        let decoded = base64ct::Base64::decode_vec(value).map_err(|_| Refusal::Malformed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| Refusal::Malformed)?;
        let (name, password) = decoded.split_once(':').ok_or(Refusal::Malformed)?;
        let (phc, known) = match self.users.iter().find(|u| u.name == name) {
            Some(u) => (u.phc.clone(), true),
            None => (DECOY_PHC.to_owned(), false),
        };
        let password = password.to_owned();
        let _permit = self.verifying.acquire().await.map_err(|_| Refusal::Wrong)?;
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        if ok && known {
            Ok(Who(name.to_owned()))
        } else {
            Err(Refusal::Wrong)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    fn hash(pw: &str) -> String {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn basic(s: &str) -> Vec<u8> {
        format!("Basic {}", base64ct::Base64::encode_string(s.as_bytes())).into_bytes()
    }

    fn private_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    #[test]
    fn the_decoy_hash_parses() {
        assert!(PasswordHash::new(DECOY_PHC).is_ok());
    }

    #[tokio::test]
    async fn bearer_and_basic_are_checked_and_name_who() {
        let dir = tempfile::tempdir().unwrap();
        let token = "t".repeat(40);
        let cfg = ConsoleConfig {
            token_file: Some(private_file(dir.path(), "token", &format!("{token}\n"))),
            password_file: Some(private_file(
                dir.path(),
                "pw",
                &format!("# operators\nalice:{}\n", hash("s3cret")),
            )),
            ..ConsoleConfig::default()
        };
        let c = Arc::new(Credentials::load(&cfg).unwrap().unwrap());
        let bearer = format!("Bearer {token}");
        assert_eq!(
            c.check(Some(bearer.as_bytes())).await.unwrap().as_str(),
            "bearer-token"
        );
        assert_eq!(c.check(Some(b"Bearer wrong")).await, Err(Refusal::Wrong));
        assert_eq!(
            c.check(Some(&basic("alice:s3cret")))
                .await
                .unwrap()
                .as_str(),
            "alice"
        );
        assert_eq!(
            c.check(Some(&basic("alice:nope"))).await,
            Err(Refusal::Wrong)
        );
        assert_eq!(
            c.check(Some(&basic("bob:s3cret"))).await,
            Err(Refusal::Wrong)
        );
        assert_eq!(c.check(None).await, Err(Refusal::Missing));
        assert_eq!(c.check(Some(b"Digest x")).await, Err(Refusal::Malformed));
        assert_eq!(c.check(Some(b"Basic !!!")).await, Err(Refusal::Malformed));
    }

    #[test]
    fn bad_files_are_reported_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let short = private_file(dir.path(), "short", "abc\n");
        let open = dir.path().join("open");
        std::fs::write(&open, "x".repeat(40)).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let pw = private_file(
            dir.path(),
            "pw",
            "alice:plaintext\nbad name:$argon2id$x\nbob:$2b$12$abcdefghijklmnopqrstuv\n",
        );
        for (cfg, want) in [
            (
                ConsoleConfig {
                    token_file: Some(short),
                    ..ConsoleConfig::default()
                },
                "at least 32 characters",
            ),
            (
                ConsoleConfig {
                    token_file: Some(open),
                    ..ConsoleConfig::default()
                },
                "chmod 600",
            ),
        ] {
            let ps = Credentials::problems(&cfg);
            assert!(
                ps.len() == 1 && ps[0].0 == "console.token_file" && ps[0].1.contains(want),
                "{ps:?}"
            );
        }
        let ps = Credentials::problems(&ConsoleConfig {
            password_file: Some(pw),
            ..ConsoleConfig::default()
        });
        assert_eq!(ps.len(), 3, "{ps:?}");
        assert!(ps[0].1.contains(":1: not a PHC hash string"), "{ps:?}");
        assert!(ps[1].1.contains(":2: user name must be"), "{ps:?}");
        assert!(ps[2].1.contains(":3:"), "{ps:?}");
    }
}
