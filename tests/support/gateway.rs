//! Test harness for the end-to-end gateway tests: a gateway in its own vhost and state directory,
//! built from the shipped configuration (`config/gateway.toml`, `config/parties.toml`) with only the
//! broker URL, the state paths and the schema directory changed; a sender that signs like an EHR;
//! and readers for the parties' queues.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use helsemelding::amqp::connection::connect;
use helsemelding::amqp::headers::{ContentType, MessageHeaders};
use helsemelding::amqp::publisher::{Publisher, Route};
use helsemelding::amqp::testing::TestVhost;
use helsemelding::amqp::topology::Topology;
use helsemelding::apprec::AppRec;
use helsemelding::cms::{self, Signer, TrustStore};
use helsemelding::gateway::cli::{headers_for, load, settings, Overrides};
use helsemelding::gateway::metrics::Metrics;
use helsemelding::gateway::server::{Clock, Gateway, Settings};
use helsemelding::ids::{HerId, MsgId};
use helsemelding::store::MessageRecord;
use lapin::options::BasicGetOptions;
use lapin::BasicProperties;

pub use super::repo;

pub fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(repo().join("fixtures/messages").join(rel))
        .unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// `text` with the content of its first `<tag>` element replaced by `value`.
fn with_element_text(text: &str, tag: &str, value: &str) -> String {
    let open = format!("<{tag}>");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("fixture has a {tag}"))
        + open.len();
    let end = text[start..].find(&format!("</{tag}>")).unwrap() + start;
    format!("{}{}{}", &text[..start], value, &text[end..])
}

/// A fixture with another MsgId (so one test can send the same message shape several times).
pub fn fixture_with_msg_id(rel: &str, msg_id: &str) -> String {
    with_element_text(&String::from_utf8(fixture(rel)).unwrap(), "MsgId", msg_id)
}

/// The fixture `rel` with a fresh MsgId, and the overrides that carry that id into the headers.
pub fn fresh_fixture(rel: &str) -> (String, helsemelding::gateway::cli::Overrides) {
    let id = MsgId::random();
    let xml = fixture_with_msg_id(rel, id.as_str());
    let o = helsemelding::gateway::cli::Overrides {
        msg_id: Some(id),
        ..Default::default()
    };
    (xml, o)
}

/// `xml` with its MsgHead GenDate replaced by `gen_date` (RFC 3339): a fixture's fixed date ages, and
/// the AppRec clock (HIS 80415:2012 §3.2, 96 hours) starts at GenDate.
pub fn with_gen_date(xml: &str, gen_date: time::OffsetDateTime) -> String {
    let date = gen_date
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    with_element_text(xml, "GenDate", &date)
}

/// A change made to the signed envelope before it is published (to test tampering).
pub type Tamper<'a> = Option<&'a dyn Fn(&mut Vec<u8>)>;

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Writes a copy of the shipped configuration pointing at `url` and at `dir` for state, with
/// absolute paths for everything else. Schemas come straight from ../shared (same layout and
/// checksums as an installed `xsd/`).
pub fn write_config(dir: &Path, url: &str) -> PathBuf {
    helsemelding::config::scratch::write_config(&repo(), dir, url, &schemas())
        .unwrap_or_else(|e| panic!("test configuration: {e}"))
}

/// The official schemas, straight from ../shared.
pub fn schemas() -> PathBuf {
    repo().join("../shared/standards/xsd")
}

/// Points `config` at another trust directory.
pub fn set_trust_dir(config: &Path, trust: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let from = format!(
        "trust_dir = {:?}",
        repo().join("fixtures/gateway-pki").display().to_string()
    );
    assert!(
        text.contains(&from),
        "the scratch configuration names the fixture PKI"
    );
    let to = format!("trust_dir = {:?}", trust.display().to_string());
    std::fs::write(config, text.replace(&from, &to)).unwrap();
}

pub struct Got {
    pub headers: MessageHeaders,
    pub body: Vec<u8>,
    pub error_condition: Option<String>,
}

pub struct Harness {
    pub gateway: Gateway,
    pub vhost: TestVhost,
    pub dir: tempfile::TempDir,
    conn: lapin::Connection,
    publisher: Publisher,
    offset_secs: Arc<AtomicI64>,
    sent: Mutex<HashMap<String, (BasicProperties, Vec<u8>)>>,
    /// Every confirmed publish into the intake, resends included.
    published: AtomicU64,
    trust: TrustStore,
}

impl Harness {
    /// A gateway of the scratch configuration: plaintext accepted (`require_encryption = false`).
    pub async fn start() -> Harness {
        Self::start_with(None, |_| {}).await
    }

    /// A gateway with the shipped policy `require_encryption = true` and the shipped keys.
    pub async fn start_encrypted() -> Harness {
        Self::start_configured(
            |_, config| {
                let text = std::fs::read_to_string(config).unwrap();
                assert!(text.contains("require_encryption = false"));
                let text = text.replace("require_encryption = false", "require_encryption = true");
                std::fs::write(config, text).unwrap();
            },
            |_| {},
        )
        .await
    }

    /// A gateway with another trust directory (relative to fixtures/gateway-pki) and tweaked settings.
    pub async fn start_with(
        trust_variant: Option<&str>,
        tweak: impl FnOnce(&mut Settings),
    ) -> Harness {
        Self::start_configured(
            |_, config| {
                if let Some(v) = trust_variant {
                    set_trust_dir(config, &repo().join("fixtures/gateway-pki").join(v));
                }
            },
            tweak,
        )
        .await
    }

    /// A gateway whose scratch configuration (`<dir>/config/gateway.toml`, `<dir>/parties.toml`)
    /// `edit` changes first.
    pub async fn start_configured(
        edit: impl FnOnce(&Path, &Path),
        tweak: impl FnOnce(&mut Settings),
    ) -> Harness {
        let vhost = TestVhost::create()
            .await
            .expect("test vhost (is RabbitMQ running?)");
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), vhost.url());
        edit(dir.path(), &config);
        let loaded = load(&config).unwrap_or_else(|ps| panic!("config problems: {ps:#?}"));
        let mut s = settings(&loaded.config);
        s.routing_log_stdout = false;
        s.retry_pause = Duration::from_millis(200);
        tweak(&mut s);
        let offset_secs = Arc::new(AtomicI64::new(0));
        let o = offset_secs.clone();
        let clock = Clock::new(move || {
            time::OffsetDateTime::now_utc() + time::Duration::seconds(o.load(Ordering::Relaxed))
        });
        let gateway = Gateway::start(s, loaded.context, loaded.signer, clock)
            .await
            .expect("gateway starts");
        let conn = connect(&vhost.settings("test-sender"))
            .await
            .expect("sender connects");
        let publisher = Publisher::open(&conn).await.expect("publisher");
        // Wait until the gateway has declared its topology (the party queues exist).
        let deadline = Instant::now() + Duration::from_secs(60);
        while vhost
            .queue_len("82001_async")
            .await
            .ok()
            .flatten()
            .is_none()
        {
            assert!(
                Instant::now() < deadline,
                "gateway did not declare its queues"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let trust = TrustStore::load(&repo().join("fixtures/gateway-pki")).unwrap();
        Harness {
            gateway,
            vhost,
            dir,
            conn,
            publisher,
            offset_secs,
            sent: Mutex::new(HashMap::new()),
            published: AtomicU64::new(0),
            trust,
        }
    }

    pub async fn send_fixture(&self, rel: &str, signer: HerId) -> MessageHeaders {
        self.send_fixture_with(rel, signer, &Overrides::default())
            .await
    }

    pub async fn send_fixture_with(
        &self,
        rel: &str,
        signer: HerId,
        o: &Overrides,
    ) -> MessageHeaders {
        let xml = fixture(rel);
        let xml = match &o.msg_id {
            // Keep the file's MsgId unless told otherwise; a new one replaces it in the content too.
            Some(id) if find(&xml, b"<MsgId>").is_some() && !rel.contains("E10") => {
                fixture_with_msg_id(rel, id.as_str()).into_bytes()
            }
            _ => xml,
        };
        self.send_bytes(&xml, &format!("parties/{signer}-sign"), o, None)
            .await
    }

    pub async fn send_fixture_signed_by(
        &self,
        rel: &str,
        key_stem: &str,
        o: &Overrides,
        tamper: Tamper<'_>,
    ) -> MessageHeaders {
        self.send_bytes(&fixture(rel), key_stem, o, tamper).await
    }

    pub async fn send_xml_signed_by(
        &self,
        xml: &str,
        key_stem: &str,
        o: &Overrides,
        tamper: Tamper<'_>,
    ) -> MessageHeaders {
        self.send_bytes(xml.as_bytes(), key_stem, o, tamper).await
    }

    /// The headers an EHR would send `xml` with and the envelope signed with `key_stem`'s key
    /// (relative to fixtures/gateway-pki), without sending it.
    pub fn sign(xml: &[u8], key_stem: &str, o: &Overrides) -> (MessageHeaders, Vec<u8>) {
        let pki = repo().join("fixtures/gateway-pki");
        let signer = Signer::from_pem_files(
            &pki.join(format!("{key_stem}.key")),
            &pki.join(format!("{key_stem}.pem")),
        )
        .expect("signer");
        let now = time::OffsetDateTime::now_utc();
        let headers = headers_for("test", xml, o, true, now).expect("headers");
        let body = signer.sign(xml, now).expect("sign");
        (headers, body)
    }

    async fn send_bytes(
        &self,
        xml: &[u8],
        key_stem: &str,
        o: &Overrides,
        tamper: Tamper<'_>,
    ) -> MessageHeaders {
        let (headers, mut body) = Self::sign(xml, key_stem, o);
        if let Some(t) = tamper {
            t(&mut body);
        }
        self.publish_recorded(&headers, body).await;
        headers
    }

    /// Signs `xml` with `key_stem`'s key like [`Self::sign`], hands the SignedData to `seal` (which
    /// encrypts it, e.g. with `openssl cms -encrypt`) and publishes what it returns as
    /// `signed-and-enveloped-data`. Returns the headers and the SignedData.
    pub async fn send_sealed(
        &self,
        xml: &[u8],
        key_stem: &str,
        o: &Overrides,
        seal: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> (MessageHeaders, Vec<u8>) {
        let (mut headers, signed) = Self::sign(xml, key_stem, o);
        headers.content_type = ContentType::EnvelopedCms;
        self.publish_recorded(&headers, seal(&signed)).await;
        (headers, signed)
    }

    /// Publishes `body` with `headers` (as the broker-validated user "guest") and keeps both for
    /// [`Self::resend`] and [`Self::sent_body`].
    async fn publish_recorded(&self, headers: &MessageHeaders, body: Vec<u8>) {
        let props = headers
            .to_properties()
            .unwrap()
            .with_user_id("guest".into());
        self.publish(&props, &body).await;
        self.sent
            .lock()
            .unwrap()
            .insert(headers.message_id.as_str().to_owned(), (props, body));
    }

    async fn publish(&self, props: &BasicProperties, body: &[u8]) {
        let t = Topology::default();
        self.publisher
            .publish_with_properties(Route::intake(&t), props.clone(), body)
            .await
            .expect("intake publish confirmed");
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// Publishes exactly the same envelope and properties again.
    pub async fn resend(&self, msg_id: &MsgId) {
        let (props, body) = self
            .sent
            .lock()
            .unwrap()
            .get(msg_id.as_str())
            .cloned()
            .expect("sent before");
        self.publish(&props, &body).await;
    }

    pub fn sent_body(&self, msg_id: &str) -> Vec<u8> {
        self.sent
            .lock()
            .unwrap()
            .get(msg_id)
            .map(|(_, b)| b.clone())
            .expect("sent before")
    }

    /// Takes `n` messages from `{her}_async`, waiting up to 60 s.
    pub async fn take(&self, her: HerId, n: usize) -> Vec<Got> {
        self.take_queue(&format!("{her}_async"), n).await
    }

    pub async fn take_queue(&self, queue: &str, n: usize) -> Vec<Got> {
        let ch = self.conn.create_channel().await.unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while out.len() < n {
            match ch
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                Some(m) => {
                    let p = &m.delivery.properties;
                    let error_condition = p
                        .headers()
                        .as_ref()
                        .and_then(|t| t.inner().get("errorCondition").cloned())
                        .and_then(|v| match v {
                            lapin::types::AMQPValue::LongString(s) => Some(s.to_string()),
                            _ => None,
                        });
                    out.push(Got {
                        headers: MessageHeaders::from_properties(p).expect("headers"),
                        body: m.delivery.data.clone(),
                        error_condition,
                    });
                }
                None => {
                    assert!(
                        Instant::now() < deadline,
                        "{queue}: got {} of {n} messages",
                        out.len()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let _ = ch.close(200, "done".into()).await;
        out
    }

    /// Waits until the gateway has settled everything sent so far (intake empty, no unacked), then
    /// asserts `{her}_async` is empty.
    pub async fn assert_empty(&self, her: HerId) {
        self.settle().await;
        let q = format!("{her}_async");
        assert_eq!(
            self.vhost.queue_len(&q).await.unwrap(),
            Some(0),
            "{q} should be empty"
        );
    }

    /// Waits until the gateway has settled every delivery it will get of what was published so
    /// far: it has received each publish plus one redelivery per requeue or unsent ack, finished
    /// (acked or requeued) every delivery it received, and the intake has nothing ready. Counting
    /// deliveries rather than looking at the intake alone matters: a requeued message already
    /// redelivered into the gateway's prefetch is neither ready in the queue nor received yet.
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let m = self.gateway.metrics();
            let received = m.received.load(Ordering::Relaxed);
            let redelivered =
                m.requeued.load(Ordering::Relaxed) + m.ack_not_sent.load(Ordering::Relaxed);
            let done = m.acked.load(Ordering::Relaxed) + redelivered;
            let deliveries = self.published.load(Ordering::Relaxed) + redelivered;
            if received >= deliveries
                && done >= received
                && self.vhost.queue_len("gateway_inbound").await.ok().flatten() == Some(0)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not settle within 60 s: {deliveries} deliveries expected, received {received}, done {done}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_for(&self, pred: impl Fn(&Metrics) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pred(&self.gateway.metrics()) {
            assert!(
                Instant::now() < deadline,
                "condition not reached:\n{}",
                self.gateway.metrics().render()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Verifies a gateway-issued AppRec's signature against the test trust store and parses it.
    pub fn open_apprec(&self, got: &Got) -> AppRec {
        let v = cms::verify(&got.body, &self.trust, time::OffsetDateTime::now_utc())
            .expect("gateway AppRec signature verifies");
        AppRec::parse(&v.content).expect("AppRec parses")
    }

    pub async fn status(&self, sender: HerId, msg_id: &str) -> MessageRecord {
        self.settle().await;
        self.gateway
            .record(sender, &MsgId::new(msg_id))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no record of {msg_id}"))
    }

    pub fn advance(&self, d: Duration) {
        self.offset_secs
            .fetch_add(d.as_secs() as i64, Ordering::Relaxed);
    }

    /// One housekeeping pass over settled state: every delivery received so far has reached its
    /// safe point (step 4 committed, then acked) first, so a sweep never races a commit — a
    /// receiver can take a copy before the gateway records it `Delivered`.
    pub async fn housekeep(&self) {
        self.settle().await;
        self.gateway.housekeep_now().await;
    }

    pub async fn stop(self) {
        self.stop_keeping_dir().await;
    }

    /// Another instance of this gateway: the same configuration, vhost and clock, its own state
    /// directory (inside this harness's), started with `tweak`. Several instances on one
    /// vhost share the intake (with `topology.partitions`, one is active per partition).
    #[allow(dead_code)]
    pub async fn start_instance(&self, name: &str, tweak: impl FnOnce(&mut Settings)) -> Gateway {
        let loaded = load(&self.dir.path().join("config/gateway.toml"))
            .unwrap_or_else(|ps| panic!("config problems: {ps:#?}"));
        let mut s = settings(&loaded.config);
        s.store_dir = self.dir.path().join(name);
        s.routing_log = Some(self.dir.path().join(format!("{name}-routing.log")));
        s.metrics_addr = None;
        s.routing_log_stdout = false;
        s.retry_pause = Duration::from_millis(200);
        tweak(&mut s);
        let o = self.offset_secs.clone();
        let clock = Clock::new(move || {
            time::OffsetDateTime::now_utc() + time::Duration::seconds(o.load(Ordering::Relaxed))
        });
        Gateway::start(s, loaded.context, loaded.signer, clock)
            .await
            .expect("second instance starts")
    }

    /// Stops like [`Harness::stop`] but hands back the state directory (the gateway's files are
    /// closed), for a test that reads them afterwards.
    pub async fn stop_keeping_dir(self) -> tempfile::TempDir {
        self.gateway.shutdown().await;
        let _ = self.conn.close(200, "test done".into()).await;
        let _ = self.vhost.delete().await;
        self.dir
    }
}
