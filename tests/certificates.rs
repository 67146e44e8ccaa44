//! Certificates about to expire (issue 16, item 3): `check-config` lists every certificate the hub
//! depends on that has expired or expires within 30 days, after its summary line, and still passes
//! (an expiring certificate is a reason to act, not a broken configuration).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped configuration in `root/config/`, with paths into the repository made absolute and
/// the register edited by `edit`.
fn config_in(root: &Path, edit: impl Fn(String) -> String) -> PathBuf {
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
    std::fs::write(&path, gateway).unwrap();
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
