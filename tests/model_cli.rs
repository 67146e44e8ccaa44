//! The CLI commands, run as the operator would: `inspect` and `install-schemas`. (`serve` ignoring
//! `HELSEMELDING_CRASH_AT`: tests/serve_fault_injection.rs.)

mod support;

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_helsemelding"))
}

#[test]
fn inspect_prints_one_line_per_file_without_patient_data() {
    let c = support::shared().join("corpus");
    let plo = c.join("plo-v1.5/sarepta-akseptansetest/Testcase-mottak-Pasientlogistikk_dodsfall-v1_5/Case1-19-Pasientlogistikk_dodsfall-v1_5.xml");
    let svar =
        c.join("dialogmelding-v1.0/sarepta-eksempel/Dialogmelding_svar_foresporsel_PLO_v1-0.xml");
    let apprec = c.join("apprec-v1.1/ks-no-fiks-nhn-client/example-avvist.xml");
    let out = bin()
        .arg("inspect")
        .args([&plo, &svar, &apprec])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].ends_with("\tLOG_DOD\tmsgid=141d4a13-7ab4-11df-8c4a-0800200c9a66\tfrom=56704/-\tto=56704/-\tcc=[56704/-]\tpayload=PLO 1.5\tpatient-identified=no(HNR)"), "{}", lines[0]);
    assert!(
        lines[1].contains("\tDIALOG_SVAR\t")
            && lines[1].contains("from=91096/91101\tto=99387/5078\tcc=[]")
            && lines[1].ends_with("patient-identified=yes(FNR)"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("APPREC V1_1") && lines[2].contains("status=2\terrors=[E21]"),
        "{}",
        lines[2]
    );
    for secret in [
        "Gundersen",
        "Roland",
        "15476500548",
        "Danser",
        "Line",
        "1969-11-13",
    ] {
        assert!(
            !text.contains(secret),
            "inspect printed patient data {secret:?}"
        );
    }
}

#[test]
fn inspect_names_the_bad_file_and_fails() {
    let bad = support::shared()
        .join("corpus/dialogmelding-v1.0/sarepta-akseptansetest-mottak/Case1-2.xml");
    let out = bin()
        .arg("inspect")
        .arg(&bad)
        .arg("/nonexistent/x.xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Case1-2.xml\tERROR\tnot well-formed XML at line")
            && text.contains("(AppRec code T01)"),
        "{text}"
    );
    assert!(text.contains("/nonexistent/x.xml\tERROR\t"), "{text}");
}

#[test]
fn install_schemas_command() {
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("xsd");
    let from = support::shared().join("standards/xsd");
    let out = bin()
        .args(["install-schemas", "--from"])
        .arg(&from)
        .arg("--to")
        .arg(&to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("installed 51 schema files"));
    assert!(to
        .join("dialogmelding-v1.1/sarepta-layout/dialogmelding/2013-01-23/dialogmelding-v1.1.xsd")
        .is_file());
    assert!(!to.join("catalog-local.xml").exists() && !to.join("drivers").exists());
    // From the installed copy with one file altered: refused, naming the file.
    std::fs::write(to.join("msghead-v1.2/MsgHead-v1_2.xsd"), b"<schema/>").unwrap();
    let out = bin()
        .args(["install-schemas", "--from"])
        .arg(&to)
        .arg("--to")
        .arg(tmp.path().join("again"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("msghead-v1.2/MsgHead-v1_2.xsd is altered: expected SHA-256"),
        "{err}"
    );
    assert!(!tmp.path().join("again").exists());
}
