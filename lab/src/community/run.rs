//! The community through the real gateway: a vhost of its own, the shipped configuration with the
//! community's parties added to the register and `[insight]` enabled with a key file, the gateway
//! started in this process (`helsemelding::gateway::server::Gateway`), every planned message
//! signed with its sender's key of the synthetic test PKI (`fixtures/gateway-pki`; a spoofed one
//! with another party's) and published to the intake as an EHR would, a sender's retry published
//! twice. Then it waits — on conditions, not time — until the recorder has written an observation
//! for every delivered message and the gateway has refused every refused one, stops the gateway,
//! and runs `helsemelding report` for the plan's months.
//!
//! Failure: [`CommunityError`] — a broker or gateway fault, a message that neither arrives nor is
//! refused while nothing moves for `stall`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use helsemelding::amqp::testing::TestVhost;
use helsemelding::amqp::topology::Topology;
use helsemelding::amqp::{connect, PublishError, Publisher, Route};
use helsemelding::cms::Signer;
use helsemelding::gateway::cli::{headers_for, load, settings, Overrides};
use helsemelding::gateway::routing_log::Outcome;
use helsemelding::gateway::server::{Clock, Gateway};
use helsemelding::insight::store::ObservationStore;
use tokio::task::JoinSet;

use super::plan::{Community, Fate, Side};
use super::{xml, CommunityError};

/// Where and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The repository root (`config/`, `fixtures/gateway-pki/`).
    pub repo: PathBuf,
    /// The official schemas.
    pub schemas: PathBuf,
    /// The gateway's configuration and state go to `<dir>/gateway`, the report to `<dir>/report`.
    pub dir: PathBuf,
    /// Give up when nothing has been recorded or refused for this long.
    pub stall: Duration,
    /// Publish the messages in reverse order (a replay that reaches the hub in another order
    /// than the messages were written: answers before questions, cancellations before what
    /// they cancel).
    pub reversed: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Observations the recorder wrote, and how many the plan expected.
    pub observed: usize,
    pub expected: usize,
    /// Messages the gateway refused (rejected or sent to the error queue), and how many the plan
    /// expected.
    pub refused: u64,
    pub expected_refused: u64,
    /// `indicators.csv` as the report wrote it.
    pub report_csv: String,
    /// The report's directory.
    pub report_dir: PathBuf,
    /// The scratch configuration (for running `helsemelding report` again).
    pub config: PathBuf,
}

/// The signing key stem of a side (its shipped party's key; every service or person of an
/// organisation signs with the organisation's enterprise certificate).
fn key_stem(side: Side) -> &'static str {
    match side {
        Side::Hospital => "parties/80001-sign",
        Side::Municipality => "parties/81001-sign",
        Side::Gp => "parties/82001-sign",
    }
}

fn accepts(c: &Community, her: u32) -> &'static str {
    let Some(p) = c.party(her) else {
        return r#"["APPREC"]"#;
    };
    if p.org.is_none() {
        return r#"["APPREC"]"#;
    }
    match p.side {
        Side::Hospital => {
            r#"["INNLEGGELSESRAPPORT", "DIALOG_FORESPORSEL", "DIALOG_SVAR", "DIALOG_NOTAT", "APPREC"]"#
        }
        Side::Municipality => {
            r#"["INNLEGGELSESRAPPORT", "UTSKRIVNINGSRAPPORT", "LOG_INNLAGT", "LOG_UTSKRIVNINGSKLAR", "LOG_AVMELDING", "LOG_UTSKREVET", "LOG_DOD", "DIALOG_FORESPORSEL", "DIALOG_SVAR", "DIALOG_NOTAT", "APPREC"]"#
        }
        Side::Gp => r#"["DIALOG_FORESPORSEL", "DIALOG_SVAR", "DIALOG_NOTAT", "LOG_DOD", "APPREC"]"#,
    }
}

/// `[[party]]` entries for the community's parties (to append to a register), certificates
/// under `pki`.
pub fn register_toml(c: &Community, pki: &Path) -> String {
    let mut s =
        String::from("\n# ---- helsemelding-lab community: a synthetic health community ----\n");
    for p in &c.parties {
        let cert = pki.join(format!("{}.pem", key_stem(p.side)));
        s.push_str(&format!(
            "\n[[party]]\nher_id = {}\nname = {:?}\n",
            p.her, p.name
        ));
        if let Some(o) = p.org {
            s.push_str(&format!("organisation_her_id = {o}\n"));
        }
        if let Some(m) = &p.municipality {
            s.push_str(&format!("municipality = {m:?}\n"));
        }
        if p.org.is_none() {
            let kind = match p.side {
                Side::Hospital => "hospital",
                Side::Municipality => "municipality",
                Side::Gp => "gp_office",
            };
            s.push_str(&format!("kind = {kind:?}\n"));
        }
        s.push_str(&format!(
            "accepts = {}\ncertificates = [{:?}]\namqp_users = [\"guest\"]\n",
            accepts(c, p.her),
            cert.display().to_string()
        ));
    }
    s
}

/// Turns `[insight]` on in the scratch configuration with a fresh key file beside it.
fn enable_insight(dir: &Path, config: &Path) -> Result<(), CommunityError> {
    let setup =
        |e: std::io::Error, p: &Path| CommunityError::Setup(format!("{}: {e}", p.display()));
    let key = dir.join("insight.key");
    let mut bytes = [0u8; 32];
    for b in bytes.iter_mut() {
        *b = fastrand::u8(..);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&key, format!("insight {hex}\n")).map_err(|e| setup(e, &key))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| setup(e, &key))?;
    }
    let text = std::fs::read_to_string(config).map_err(|e| setup(e, config))?;
    if !text.contains("\nenabled = false\n") {
        return Err(CommunityError::Setup(format!(
            "{}: no `enabled = false` in [insight] to turn on",
            config.display()
        )));
    }
    let text = text.replace(
        "\nenabled = false\n",
        &format!(
            "\nenabled = true\nkey_file = {:?}\n",
            key.display().to_string()
        ),
    );
    std::fs::write(config, text).map_err(|e| setup(e, config))
}

/// One message ready for the intake.
struct Outgoing {
    headers: helsemelding::amqp::headers::MessageHeaders,
    body: Vec<u8>,
    again: bool,
}

/// Signs every planned message on all cores (in plan order).
fn sign_all(c: &Community, pki: &Path) -> Result<Vec<Outgoing>, CommunityError> {
    let load = |side: Side| {
        let stem = pki.join(key_stem(side));
        Signer::from_pem_files(&stem.with_extension("key"), &stem.with_extension("pem"))
            .map_err(|e| CommunityError::Setup(format!("signing key {}: {e}", stem.display())))
    };
    let signers = [
        (Side::Hospital, load(Side::Hospital)?),
        (Side::Municipality, load(Side::Municipality)?),
        (Side::Gp, load(Side::Gp)?),
    ];
    let signer = |side: Side| {
        signers
            .iter()
            .find_map(|(s, k)| (*s == side).then_some(k))
            .ok_or_else(|| CommunityError::Setup(format!("no key for {side:?}")))
    };
    let one = |i: usize| -> Result<Outgoing, CommunityError> {
        let m = &c.messages[i];
        let side = c.party(m.from).map_or(Side::Hospital, |p| p.side);
        // A spoofed message is signed with a key the register does not give its sender.
        let side = if m.fate == Fate::Spoofed {
            match side {
                Side::Gp => Side::Hospital,
                _ => Side::Gp,
            }
        } else {
            side
        };
        let text = xml::render(c, m);
        let now = time::OffsetDateTime::now_utc();
        let headers = headers_for(&m.msg_id, text.as_bytes(), &Overrides::default(), true, now)
            .map_err(|e| CommunityError::Setup(format!("{}: {e}", m.msg_id)))?;
        let body = signer(side)?
            .sign(text.as_bytes(), now)
            .map_err(|e| CommunityError::Setup(format!("signing {}: {e}", m.msg_id)))?;
        Ok(Outgoing {
            headers,
            body,
            again: m.again,
        })
    };
    crate::on_all_cores(c.messages.len(), one, || {
        CommunityError::Setup("a signing thread panicked".into())
    })
}

async fn publish_all(publisher: &Publisher, msgs: &[Outgoing]) -> Result<(), CommunityError> {
    let t = Topology::default();
    let mut set: JoinSet<Result<(), PublishError>> = JoinSet::new();
    for m in msgs {
        let props = m
            .headers
            .to_properties()
            .map_err(|e| CommunityError::Broker(format!("headers: {e}")))?
            .with_user_id("guest".into());
        for _ in 0..if m.again { 2 } else { 1 } {
            if set.len() >= 256 {
                if let Some(r) = set.join_next().await {
                    r.map_err(|e| CommunityError::Broker(e.to_string()))??;
                }
            }
            let (p, t, props, body) = (publisher.clone(), t.clone(), props.clone(), m.body.clone());
            set.spawn(async move {
                p.publish_with_properties(Route::intake(&t), props, &body)
                    .await
            });
        }
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| CommunityError::Broker(e.to_string()))??;
    }
    Ok(())
}

/// The months of the plan, `YYYY-MM` (first, last).
pub fn months(c: &Community) -> (String, String) {
    let f = |d: time::Date| format!("{:04}-{:02}", d.year(), d.month() as u8);
    (f(c.first_day()), f(c.shape.last_day))
}

/// Runs the community through a gateway of its own and reports (see the module documentation).
pub async fn through_gateway(c: &Community, o: &RunOptions) -> Result<RunResult, CommunityError> {
    let vhost = TestVhost::create()
        .await
        .map_err(|e| CommunityError::Broker(format!("vhost: {e}")))?;
    let result = run_in(c, o, &vhost).await;
    let _ = vhost.delete().await;
    result
}

async fn run_in(
    c: &Community,
    o: &RunOptions,
    vhost: &TestVhost,
) -> Result<RunResult, CommunityError> {
    let gw_dir = o.dir.join("gateway");
    std::fs::create_dir_all(&gw_dir)
        .map_err(|e| CommunityError::Setup(format!("{}: {e}", gw_dir.display())))?;
    let config =
        helsemelding::config::scratch::write_config(&o.repo, &gw_dir, vhost.url(), &o.schemas)
            .map_err(|e| CommunityError::Setup(format!("configuration: {e}")))?;
    let pki = o.repo.join("fixtures/gateway-pki");
    let register = gw_dir.join("parties.toml");
    let mut parties = std::fs::read_to_string(&register)
        .map_err(|e| CommunityError::Setup(format!("{}: {e}", register.display())))?;
    parties.push_str(&register_toml(c, &pki));
    std::fs::write(&register, parties)
        .map_err(|e| CommunityError::Setup(format!("{}: {e}", register.display())))?;
    enable_insight(&gw_dir, &config)?;

    let loaded = load(&config).map_err(|ps| CommunityError::Setup(ps.join("; ")))?;
    let mut s = settings(&loaded.config);
    s.routing_log_stdout = false;
    let gateway = Gateway::start(s, loaded.context, loaded.signer, Clock::system())
        .await
        .map_err(|e| CommunityError::Gateway(format!("start: {e}")))?;
    let outcome = drive(c, o, vhost, &gateway, &pki).await;
    gateway.shutdown().await;
    let (observed, refused) = outcome?;

    let (from, to) = months(c);
    let report_dir = o.dir.join("report");
    let args = helsemelding::insight::report::ReportArgs {
        from,
        to,
        out: report_dir.clone(),
        config: config.clone(),
    };
    let code = tokio::task::spawn_blocking(move || helsemelding::insight::report::run(&args))
        .await
        .map_err(|e| CommunityError::Gateway(format!("report task: {e}")))?;
    if code != std::process::ExitCode::SUCCESS {
        return Err(CommunityError::Gateway(format!(
            "helsemelding report failed: {code:?}"
        )));
    }
    let csv_path = report_dir.join("indicators.csv");
    let report_csv = std::fs::read_to_string(&csv_path)
        .map_err(|e| CommunityError::Setup(format!("{}: {e}", csv_path.display())))?;
    Ok(RunResult {
        observed,
        expected: expected(c),
        refused,
        expected_refused: expected_refused(c),
        report_csv,
        report_dir,
        config,
    })
}

/// Observations the plan expects: one per delivered message (a retry is the same message).
pub fn expected(c: &Community) -> usize {
    c.messages
        .iter()
        .filter(|m| matches!(m.fate, Fate::Counted | Fate::Erased))
        .count()
}

/// Messages the gateway is to refuse.
pub fn expected_refused(c: &Community) -> u64 {
    c.messages
        .iter()
        .filter(|m| matches!(m.fate, Fate::Spoofed | Fate::Invalid))
        .count() as u64
}

async fn drive(
    c: &Community,
    o: &RunOptions,
    vhost: &TestVhost,
    gateway: &Gateway,
    pki: &Path,
) -> Result<(usize, u64), CommunityError> {
    let recorder = gateway.insight().ok_or_else(|| {
        CommunityError::Gateway("[insight] is enabled but the recorder did not start".into())
    })?;
    let signed = {
        let (c, pki) = (Arc::new(c.clone()), pki.to_path_buf());
        tokio::task::spawn_blocking(move || sign_all(&c, &pki))
            .await
            .map_err(|e| CommunityError::Setup(format!("signing task: {e}")))??
    };
    let conn = connect(&vhost.settings("community-sender"))
        .await
        .map_err(|e| CommunityError::Broker(e.to_string()))?;
    let publisher = Publisher::open(&conn)
        .await
        .map_err(|e| CommunityError::Broker(e.to_string()))?;
    if o.reversed {
        let mut signed = signed;
        signed.reverse();
        publish_all(&publisher, &signed).await?;
    } else {
        publish_all(&publisher, &signed).await?;
    }

    let (want, want_refused) = (expected(c), expected_refused(c));
    let metrics = gateway.metrics();
    let mut progress = (0usize, 0u64);
    let mut moved = Instant::now();
    loop {
        let store = recorder.store();
        let observed = tokio::task::spawn_blocking(move || store.observations().map(|v| v.len()))
            .await
            .map_err(|e| CommunityError::Gateway(format!("store task: {e}")))?
            .map_err(|e| CommunityError::Gateway(format!("insight store: {e}")))?;
        // A schema fault is answered with a negative AppRec (rejected); a spoofed signature goes
        // to the sender's error queue (HITS 1168: no AppRec to a party that may not be who it says).
        let refused = metrics.outcome(Outcome::Rejected) + metrics.outcome(Outcome::ErrorQueue);
        if observed >= want && refused >= want_refused {
            return Ok((observed, refused));
        }
        if (observed, refused) != progress {
            progress = (observed, refused);
            moved = Instant::now();
        } else if moved.elapsed() > o.stall {
            return Err(CommunityError::Stalled(format!(
                "recorded {observed} of {want}, refused {refused} of {want_refused}, nothing moved for {:?}",
                o.stall
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
