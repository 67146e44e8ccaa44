//! `helsemelding validate`: one line per file, exit status 1 unless every file is VALID, and a
//! clear line (not a panic) for a file that cannot be read.

use std::path::Path;
use std::process::Command;

#[test]
fn validate_prints_one_line_per_file_and_fails_unless_all_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schemas = root.join("../shared/standards/xsd");
    let ok = root.join("fixtures/xsd/apprec-1.1-ok.xml");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad date.xml");
    let text = std::fs::read_to_string(&ok)
        .expect("fixture")
        .replace("<IssueDate>2026-01-15T09:00:00", "<IssueDate>1991-12-4");
    std::fs::write(&bad, text).expect("write");
    let missing = dir.path().join("missing.xml");

    let run = |files: &[&Path]| {
        Command::new(env!("CARGO_BIN_EXE_helsemelding"))
            .arg("validate")
            .arg("--schemas")
            .arg(&schemas)
            .args(files)
            .output()
            .expect("runs")
    };

    let all_ok = run(&[&ok]);
    assert!(all_ok.status.success());
    let out = String::from_utf8_lossy(&all_ok.stdout);
    assert_eq!(out.lines().count(), 1);
    assert!(
        out.starts_with(&format!("{}\tVALID\t", ok.display())),
        "{out}"
    );

    let mixed = run(&[&ok, &bad, &missing]);
    assert_eq!(mixed.status.code(), Some(1));
    let out = String::from_utf8_lossy(&mixed.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].starts_with(&format!("{}\tINVALID\t", bad.display())),
        "{out}"
    );
    assert!(
        lines[1].contains("/AppRec/OriginalMsgId/IssueDate"),
        "{out}"
    );
    assert!(
        lines[2].starts_with(&format!("{}\tUNREADABLE\t", missing.display())),
        "{out}"
    );

    let no_schemas = Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(["validate", "--schemas", "/nonexistent"])
        .arg(&ok)
        .output()
        .expect("runs");
    assert_eq!(no_schemas.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_schemas.stderr).contains("/nonexistent"));
}
