//! The official schema files the gateway validates against, pinned by `xsd/MANIFEST.toml`, and the
//! step that installs them (`helsemelding install-schemas --from DIR [--to xsd]`).
//!
//! Input: a directory laid out like the Sarepta mirror (`../shared/standards/xsd/`). Output: the
//! same relative paths under the target directory, every file byte-identical to the published one
//! (SHA-256 from the manifest, which is compiled into the binary so the check cannot be bypassed by
//! editing a file next to the schemas).
//!
//! Failure modes: a listed file missing or altered in the source refuses the whole install (every
//! problem is named with its expected and actual hash) and nothing is written; an I/O error while
//! copying removes the temporary files already written. Files are copied to a temporary name, their
//! hash checked again, and only then renamed into place, so a crash never leaves a truncated schema
//! under its real name. [`verify_installed`] gives the gateway (at startup) and `check-config` the
//! same verdict on an installed directory.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

/// The manifest, compiled in. The `.xsd` files are third-party material and are not committed.
pub const MANIFEST_TOML: &str = include_str!("../xsd/MANIFEST.toml");

/// One official schema file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaFile {
    /// Path relative to the schema directory, `/`-separated (e.g. `msghead-v1.2/MsgHead-v1_2.xsd`).
    pub path: String,
    /// The schema's `targetNamespace` (empty for none).
    pub namespace: String,
    /// The standard it belongs to: `MsgHead`, `AppRec`, `Dialogmelding` or `PLO`.
    pub standard: String,
    /// The standard's version (e.g. `1.1`).
    pub version: String,
    /// Lower-case hex SHA-256 of the published bytes.
    pub sha256: String,
}

/// The parsed `xsd/MANIFEST.toml`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: Vec<SchemaFile>,
}

/// Why the manifest itself cannot be used (a build defect, never outside input).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("xsd/MANIFEST.toml does not parse: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("xsd/MANIFEST.toml entry {path:?}: {problem}")]
    BadEntry { path: String, problem: &'static str },
}

impl Manifest {
    /// The manifest compiled into this binary, checked for unsafe paths and malformed hashes.
    pub fn embedded() -> Result<Manifest, ManifestError> {
        Self::parse(MANIFEST_TOML)
    }

    /// Parses and checks a manifest text.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest = toml::from_str(text)?;
        for s in &m.schema {
            let bad = |problem| ManifestError::BadEntry {
                path: s.path.clone(),
                problem,
            };
            // A manifest path must stay inside the target directory.
            let p = Path::new(&s.path);
            if s.path.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(bad("path must be relative, without `..`"));
            }
            if s.sha256.len() != 64
                || !s
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(bad("sha256 must be 64 lower-case hex digits"));
            }
        }
        Ok(m)
    }
}

/// One thing wrong with a schema directory, naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestProblem {
    /// A listed file is not there.
    Missing { path: PathBuf },
    /// A listed file's bytes differ from the published ones.
    Altered {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// A listed file exists but cannot be read.
    Unreadable { path: PathBuf, error: String },
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { path } => write!(f, "schema file {} is missing", path.display()),
            Self::Altered {
                path,
                expected,
                actual,
            } => write!(
                f,
                "schema file {} is altered: expected SHA-256 {expected}, found {actual}",
                path.display()
            ),
            Self::Unreadable { path, error } => {
                write!(f, "schema file {} cannot be read: {error}", path.display())
            }
        }
    }
}

/// Why `install-schemas` refused or failed. Nothing partial is left under a real name.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("schema source {0} is not a directory")]
    NoSource(PathBuf),
    #[error("refusing to install schemas from {from}:\n  {}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Source {
        from: PathBuf,
        problems: Vec<ManifestProblem>,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("copied file {path} does not match: expected SHA-256 {expected}, found {actual}")]
    CopyMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads one listed file under `dir` and checks its hash.
fn check_file(dir: &Path, s: &SchemaFile) -> Result<Vec<u8>, ManifestProblem> {
    let path = dir.join(&s.path);
    match fs::read(&path) {
        Ok(bytes) => {
            let actual = sha256_hex(&bytes);
            if actual == s.sha256 {
                Ok(bytes)
            } else {
                Err(ManifestProblem::Altered {
                    path,
                    expected: s.sha256.clone(),
                    actual,
                })
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ManifestProblem::Missing { path }),
        Err(e) => Err(ManifestProblem::Unreadable {
            path,
            error: e.to_string(),
        }),
    }
}

fn check_all(dir: &Path, m: &Manifest) -> (Vec<(usize, Vec<u8>)>, Vec<ManifestProblem>) {
    let mut good = Vec::new();
    let mut problems = Vec::new();
    for (i, s) in m.schema.iter().enumerate() {
        match check_file(dir, s) {
            Ok(b) => good.push((i, b)),
            Err(p) => problems.push(p),
        }
    }
    (good, problems)
}

/// Checks that every schema of the embedded manifest is present under `dir` with its published
/// bytes. Reports *every* problem, each naming its file. A manifest defect is reported as an
/// `Unreadable` problem on `xsd/MANIFEST.toml`.
pub fn verify_installed(dir: &Path) -> Result<(), Vec<ManifestProblem>> {
    let m = Manifest::embedded().map_err(|e| {
        vec![ManifestProblem::Unreadable {
            path: PathBuf::from("xsd/MANIFEST.toml"),
            error: e.to_string(),
        }]
    })?;
    verify_against(dir, &m)
}

/// [`verify_installed`] against a given manifest.
pub fn verify_against(dir: &Path, m: &Manifest) -> Result<(), Vec<ManifestProblem>> {
    let (_, problems) = check_all(dir, m);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Installs the embedded manifest's files from `from` into `to`; returns how many were installed.
pub fn install(from: &Path, to: &Path) -> Result<usize, InstallError> {
    install_with(&Manifest::embedded()?, from, to)
}

/// [`install`] with a given manifest.
pub fn install_with(m: &Manifest, from: &Path, to: &Path) -> Result<usize, InstallError> {
    if !from.is_dir() {
        return Err(InstallError::NoSource(from.to_path_buf()));
    }
    let (good, problems) = check_all(from, m);
    if !problems.is_empty() {
        return Err(InstallError::Source {
            from: from.to_path_buf(),
            problems,
        });
    }
    // Stage every file under a temporary name next to its destination, then rename them all.
    let tmp_suffix = format!(".install-{}.tmp", std::process::id());
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(good.len());
    let stage = |staged: &mut Vec<(PathBuf, PathBuf)>| -> Result<(), InstallError> {
        for (i, bytes) in &good {
            let s = &m.schema[*i];
            let dest = to.join(&s.path);
            let tmp = PathBuf::from(format!("{}{tmp_suffix}", dest.display()));
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(|source| InstallError::Write {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            fs::write(&tmp, bytes).map_err(|source| InstallError::Write {
                path: tmp.clone(),
                source,
            })?;
            staged.push((tmp.clone(), dest));
            // Re-read what landed on disk: a full disk or a bad mount must not pass silently.
            let written = fs::read(&tmp).map_err(|source| InstallError::Write {
                path: tmp.clone(),
                source,
            })?;
            let actual = sha256_hex(&written);
            if actual != s.sha256 {
                return Err(InstallError::CopyMismatch {
                    path: tmp,
                    expected: s.sha256.clone(),
                    actual,
                });
            }
        }
        Ok(())
    };
    if let Err(e) = stage(&mut staged) {
        for (tmp, _) in &staged {
            let _ = fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (n, (tmp, dest)) in staged.iter().enumerate() {
        if let Err(source) = fs::rename(tmp, dest) {
            for (t, _) in &staged[n..] {
                let _ = fs::remove_file(t);
            }
            return Err(InstallError::Write {
                path: dest.clone(),
                source,
            });
        }
    }
    Ok(staged.len())
}

/// `helsemelding install-schemas`: copy the official schemas, verifying every checksum.
#[derive(Debug, clap::Args)]
pub struct InstallSchemasArgs {
    /// Directory holding the official schemas (Sarepta layout, e.g. ../shared/standards/xsd).
    #[arg(long)]
    pub from: PathBuf,
    /// Target directory.
    #[arg(long, default_value = "xsd")]
    pub to: PathBuf,
}

/// Runs `install-schemas`; prints what was done or every problem.
pub fn run_install(args: &InstallSchemasArgs) -> std::process::ExitCode {
    match install(&args.from, &args.to) {
        Ok(n) => {
            println!(
                "installed {n} schema files into {} (all checksums verified)",
                args.to.display()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("install-schemas: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/standards/xsd");

    #[test]
    fn embedded_manifest_lists_the_official_files_only() {
        let m = Manifest::embedded().expect("manifest parses");
        assert_eq!(m.schema.len(), 51);
        for s in &m.schema {
            assert!(s.path.ends_with(".xsd"), "{}", s.path);
            assert!(
                !s.path.starts_with("drivers/")
                    && !s.path.starts_with("variants/")
                    && !s.path.starts_with("ebxml")
            );
        }
        let ns = |p: &str| {
            m.schema
                .iter()
                .find(|s| s.path == p)
                .map(|s| s.namespace.as_str())
        };
        assert_eq!(
            ns("msghead-v1.2/MsgHead-v1_2.xsd"),
            Some("http://www.kith.no/xmlstds/msghead/2006-05-24")
        );
        assert_eq!(
            ns("apprec-v1.1/AppRec-v1.1.xsd"),
            Some("http://www.kith.no/xmlstds/apprec/2012-02-15")
        );
        assert_eq!(
            ns("dialogmelding-v1.1/sarepta-layout/dialogmelding/2013-01-23/dialogmelding-v1.1.xsd"),
            Some("http://www.kith.no/xmlstds/dialog/2013-01-23")
        );
    }

    #[test]
    fn installs_verifies_and_detects_tampering_and_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        let to = tmp.path().join("xsd");
        let n = install(Path::new(SOURCE), &to).expect("install from the shared standards");
        assert_eq!(n, 51);
        verify_installed(&to).expect("freshly installed schemas verify");
        // No temporary files are left behind.
        let leftovers: Vec<_> = walk(&to)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let tampered = to.join("apprec-v1.1/AppRec-v1.1.xsd");
        let mut bytes = fs::read(&tampered).unwrap();
        bytes.extend_from_slice(b"<!-- x -->");
        fs::write(&tampered, &bytes).unwrap();
        fs::remove_file(to.join("plo-v1.6/kith.xsd")).unwrap();
        let problems = verify_installed(&to).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("apprec-v1.1/AppRec-v1.1.xsd is altered")
                    && t.contains(&sha256_hex(&bytes))),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("plo-v1.6/kith.xsd is missing")),
            "{text:?}"
        );

        // Installing *from* the broken directory refuses and writes nothing.
        let to2 = tmp.path().join("second");
        let err = install(&to, &to2).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("AppRec-v1.1.xsd")
                && msg.contains("expected SHA-256")
                && msg.contains("plo-v1.6/kith.xsd is missing"),
            "{msg}"
        );
        assert!(
            !to2.exists(),
            "nothing may be installed from a broken source"
        );
    }

    #[test]
    fn manifest_rejects_escaping_paths_and_bad_hashes() {
        let entry = |p: &str, h: &str| {
            format!("[[schema]]\npath = \"{p}\"\nnamespace = \"\"\nstandard = \"X\"\nversion = \"1\"\nsha256 = \"{h}\"\n")
        };
        let good = "a".repeat(64);
        assert!(Manifest::parse(&entry("a/b.xsd", &good)).is_ok());
        assert!(Manifest::parse(&entry("../b.xsd", &good)).is_err());
        assert!(Manifest::parse(&entry("/etc/b.xsd", &good)).is_err());
        assert!(Manifest::parse(&entry("a/b.xsd", "abc")).is_err());
        assert!(Manifest::parse("[[schema]]\npath = \"a\"\nbogus = 1\n").is_err());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
