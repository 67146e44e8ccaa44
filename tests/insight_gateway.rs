//! Issue 13 through the real gateway (own vhost, real RabbitMQ): PLO discharge messages with
//! synthetic identity numbers (fixtures/insight/, made by fixtures/make_insight.py) are delivered,
//! recorded as observations under HMAC pseudonyms with no identity number, name or free text
//! anywhere in insight.redb, and `helsemelding report` turns them into the planted CSV cells.

mod support;

use std::time::{Duration, Instant};

use helsemelding::gateway::cli::Overrides;
use helsemelding::ids::{HerId, MsgId};
use helsemelding::insight::key::Keys;
use helsemelding::insight::store::ObservationStore;
use support::gateway::*;

const NURSING_HOME: HerId = HerId(81001);
const OLD_KEY: [u8; 32] = [0x11; 32];
const NEW_KEY: [u8; 32] = [0x22; 32];

fn insight_fixtures() -> Vec<(String, String)> {
    let dir = repo().join("fixtures/insight");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml.find(&open).unwrap() + open.len();
    &xml[start..start + xml[start..].find('<').unwrap()]
}

/// Enables `[insight]` in the scratch configuration with a key file of two keys (old, new).
fn enable_insight(dir: &std::path::Path, config: &std::path::Path) {
    let key = dir.join("insight.key");
    std::fs::write(
        &key,
        format!(
            "# rotated: the last line is the newest\ninsight {}\ninsight {}\n",
            hex::encode(OLD_KEY),
            hex::encode(NEW_KEY)
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = std::fs::read_to_string(config).unwrap();
    assert!(
        text.contains("\nenabled = false\n"),
        "the shipped [insight] section"
    );
    let text = text.replace(
        "\nenabled = false\n",
        &format!(
            "\nenabled = true\nkey_file = {:?}\n",
            key.display().to_string()
        ),
    );
    std::fs::write(config, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plo_traffic_is_recorded_pseudonymised_and_reported() {
    let h = Harness::start_configured(enable_insight, |_| {}).await;
    let recorder = h
        .gateway
        .insight()
        .expect("[insight] enabled starts the recorder");
    let files = insight_fixtures();
    assert_eq!(
        files.len(),
        14,
        "fixtures/insight: run fixtures/make_insight.py"
    );
    let mut fnrs = Vec::new();
    for (_, xml) in &files {
        h.send_xml_signed_by(xml, "parties/80001-sign", &Overrides::default(), None)
            .await;
        fnrs.push(element(&xml[xml.find("<Patient>").unwrap()..], "Id").to_owned());
    }
    // The same message again (a sender's retry): delivered once, counted once.
    let p2 = files.iter().find(|(n, _)| n == "p2-1-usk.xml").unwrap();
    h.resend(&MsgId::new(element(&p2.1, "MsgId"))).await;
    let got = h.take(NURSING_HOME, 14).await;
    assert_eq!(got.len(), 14);
    h.assert_empty(NURSING_HOME).await;

    // Recorded off the hot path: wait for the recorder to have written all 14.
    let deadline = Instant::now() + Duration::from_secs(60);
    let observations = loop {
        let obs = recorder.store().observations().unwrap();
        if obs.len() >= 14 {
            break obs;
        }
        assert!(Instant::now() < deadline, "recorded {} of 14", obs.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(observations.len(), 14);
    let keys = Keys::from_bytes(&[&OLD_KEY, &NEW_KEY]);
    let mut patients: Vec<String> = fnrs.clone();
    patients.sort();
    patients.dedup();
    assert_eq!(patients.len(), 6);
    for o in &observations {
        let p = o
            .patient
            .as_deref()
            .expect("every PLO message names its patient");
        // Written with the newest key.
        assert!(
            patients.iter().any(|f| keys.pseudonyms(f).unwrap()[0] == p),
            "{} is not HMAC(newest key, an FNR of the case)",
            o.msg_id
        );
        assert_eq!(o.receiver.org, Some(81000));
        assert!(o.plo.is_some(), "{}: PLO facts read", o.msg_id);
    }
    let metrics = h.gateway.metrics().render();
    assert!(
        metrics.contains("helsemelding_insight_not_recorded_total 0"),
        "{metrics}"
    );
    drop(recorder);
    let dir = h.stop_keeping_dir().await;

    // Nothing that identifies the patient is in the file, in any form.
    let bytes = std::fs::read(dir.path().join("state/insight.redb")).unwrap();
    for f in &patients {
        assert!(
            find(&bytes, f.as_bytes()).is_none(),
            "identity number in insight.redb"
        );
    }
    for text in ["Testpasient", "Syntetisk", "fritekst"] {
        assert!(
            find(&bytes, text.as_bytes()).is_none(),
            "{text:?} in insight.redb"
        );
    }

    // The report CLI turns the planted case into its cells.
    let out = dir.path().join("report");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(["report", "--from", "2026-03", "--to", "2026-03", "--out"])
        .arg(&out)
        .arg("--config")
        .arg(dir.path().join("config/gateway.toml"))
        .status()
        .unwrap();
    assert!(status.success());
    let csv = std::fs::read_to_string(out.join("indicators.csv")).unwrap();
    let unit = "2026-03,81000,Testkommune (5501)";
    for want in [
        format!("I1,{unit},6,6,,6,false"),
        format!("I2,{unit},20,20,,5,false"),
        format!("I3,{unit},,,,,true"),
        format!("I7_home,{unit},1,6,6,6,false"),
        format!("I7_dead,{unit},0,0,6,6,false"),
        format!("I12_LOG_UTSKRIVNINGSKLAR,{unit},6,6,,6,false"),
        format!("I12_LOG_UTSKREVET,{unit},6,6,,6,false"),
    ] {
        assert!(csv.lines().any(|l| l == want), "missing {want:?} in\n{csv}");
    }
    assert!(csv.starts_with(
        "indicator,period,unit_her_id,unit_name,value,numerator,denominator,n,suppressed\n"
    ));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Testkommune (5501)"));
    let xlsx = std::fs::read(out.join("indicators.xlsx")).unwrap();
    assert!(xlsx.starts_with(b"PK"), "indicators.xlsx is a zip package");
}

/// An encrypted message is observed from the SignedData the hub opened: its patient is linked
/// exactly as a plaintext one's (the delivery's body, an EnvelopedData, holds nothing readable).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_encrypted_message_is_observed_from_what_the_hub_opened() {
    let h = Harness::start_configured(
        |dir, config| {
            enable_insight(dir, config);
            let text = std::fs::read_to_string(config).unwrap();
            assert!(text.contains("require_encryption = false"));
            std::fs::write(
                config,
                text.replace("require_encryption = false", "require_encryption = true"),
            )
            .unwrap();
        },
        |_| {},
    )
    .await;
    let recorder = h
        .gateway
        .insight()
        .expect("[insight] enabled starts the recorder");
    let files = insight_fixtures();
    let (_, xml) = &files[0];
    let fnr = element(&xml[xml.find("<Patient>").unwrap()..], "Id").to_owned();
    h.send_sealed(
        xml.as_bytes(),
        "parties/80001-sign",
        &Overrides::default(),
        |s| support::openssl::encrypt(s, &["-aes256"], "encryption/90000-enc.pem"),
    )
    .await;
    assert_eq!(h.take(NURSING_HOME, 1).await.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let observations = loop {
        let obs = recorder.store().observations().unwrap();
        if !obs.is_empty() {
            break obs;
        }
        assert!(Instant::now() < deadline, "nothing recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let keys = Keys::from_bytes(&[&OLD_KEY, &NEW_KEY]);
    assert_eq!(
        observations[0].patient.as_deref(),
        Some(keys.pseudonyms(&fnr).unwrap()[0].as_str()),
        "the patient of the encrypted message is linked"
    );
    h.stop().await;
}
