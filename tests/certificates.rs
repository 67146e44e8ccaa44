//! Certificates about to expire (issue 16, item 3): `check-config` lists every certificate the hub
//! depends on that has expired or expires within 30 days, after its summary line, and still passes
//! (an expiring certificate is a reason to act, not a broken configuration). Encryption keys and
//! certificates (issue 12, item 4) are checked as well: each hub key matches its certificate,
//! every encryption certificate allows keyEncipherment and is valid now, and one that expires within
//! 30 days is a warning like any other.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped configuration in `root/config/`, with paths into the repository made absolute and
/// the register edited by `edit`.
fn config_in(root: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    config_edited(root, |g| g, edit)
}

/// [`config_in`], with the gateway file edited by `edit_gateway` too.
fn config_edited(
    root: &Path,
    edit_gateway: impl Fn(String) -> String,
    edit: impl Fn(String) -> String,
) -> PathBuf {
    let dir = root.join("config");
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = format!("\"{}/", repo().join("fixtures").display());
    let gateway = std::fs::read_to_string(repo().join("config/gateway.toml"))
        .unwrap()
        .replace("\"fixtures/", &fixtures)
        .replace(
            "schemas = \"xsd\"",
            &format!("schemas = {:?}", repo().join("xsd").display().to_string()),
        );
    let parties = std::fs::read_to_string(repo().join("config/parties.toml"))
        .unwrap()
        .replace("\"fixtures/", &fixtures);
    std::fs::write(dir.join("parties.toml"), edit(parties)).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, edit_gateway(gateway)).unwrap();
    path
}

fn check_config(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(["check-config", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_config_lists_an_expired_party_certificate_and_passes() {
    let root = tempfile::tempdir().unwrap();
    let config = config_in(root.path(), |p| {
        p.replace(
            "gateway-pki/parties/82001-sign.pem",
            "gateway-pki/bad/expired-sign.pem",
        )
    });
    let (ok, out) = check_config(&config);
    assert!(ok, "{out}");
    assert!(out.starts_with("configuration OK"), "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(
        warnings[0].contains("certificate EXPIRED: party 82001 signing")
            && warnings[0].contains("expired-sign.pem"),
        "{out}"
    );
}

#[test]
fn check_config_is_quiet_when_no_certificate_is_near_its_end() {
    let root = tempfile::tempdir().unwrap();
    let (ok, out) = check_config(&config_in(root.path(), |p| p));
    assert!(ok, "{out}");
    assert!(!out.contains("warning:"), "{out}");
}

const GP_ENCRYPTION: &str = "gateway-pki/encryption/82001-enc.pem";

#[test]
fn check_config_refuses_encryption_certificates_and_keys_that_cannot_work() {
    let root = tempfile::tempdir().unwrap();
    let config = config_edited(
        root.path(),
        // The previous key with the current key's certificate: they do not belong together.
        |g| {
            g.replace(
                "encryption/90000-enc-previous.pem",
                "encryption/90000-enc.pem",
            )
        },
        |p| {
            p.replace(
                GP_ENCRYPTION,
                "gateway-pki/encryption/bad/sign-only-enc.pem",
            )
            .replace(
                "gateway-pki/encryption/81001-enc.pem",
                "gateway-pki/encryption/bad/expired-enc.pem",
            )
        },
    );
    let (ok, out) = check_config(&config);
    assert!(!ok, "{out}");
    for expected in [
        "90000-enc-previous.key: this key does not belong to certificate",
        "party 82001: encryption certificate",
        "does not allow keyEncipherment",
        "party 81001: encryption certificate",
        "expired at",
    ] {
        assert!(out.contains(expected), "{expected:?} missing in:\n{out}");
    }
}

#[test]
fn check_config_warns_of_an_encryption_certificate_that_expires_within_30_days() {
    let root = tempfile::tempdir().unwrap();
    let (key, cert) = (root.path().join("soon.key"), root.path().join("soon.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "10",
        ])
        .args(["-subj", "/CN=Expiring encryption certificate"])
        .args(["-addext", "keyUsage=critical,keyEncipherment"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let cert = cert.display().to_string();
    let config = config_in(root.path(), |p| {
        p.replace(
            &format!("\"{}/fixtures/{GP_ENCRYPTION}\"", repo().display()),
            &format!("{cert:?}"),
        )
    });
    let (ok, out) = check_config(&config);
    assert!(ok, "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(
        warnings[0].contains("party 82001 encryption") && warnings[0].contains("soon.pem"),
        "{out}"
    );
}
