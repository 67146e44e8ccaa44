//! The operator console in a real browser (issue 15): the real `helsemelding serve` binary routes
//! real signed messages (published by `helsemelding replay`) in a vhost of its own, and Debian's
//! Chromium, driven headless through chromedriver's WebDriver HTTP API, uses the console.
//!
//! Checked: the overview renders; a MsgId searched on the decisions page is followed to its page,
//! whose recipients, states and timings equal the routing log's lines; a search containing markup
//! and script is shown as text and never executed; bound to 0.0.0.0 with a token, the console
//! refuses the browser (no credentials) and plain requests without or with a wrong token, answers
//! the right one, and a confirmed redrive moves a dead letter and is logged with who did it.
//! The gateway's intake is in two partitions; the overview lists them with the intake.
//! Screenshots (PNG): `target/console-screenshots/{overview,search,message,markup-search,refused}.png`.
//!
//! Needs `chromium` and `chromedriver` (`.ci/run` installs them). Without them the test prints why
//! and passes — except under `CI=true`, where their absence fails it.

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use helsemelding::amqp::publisher::{Publisher, Route};
use serde_json::Value;
use support::browser::{browser_test, free_port, http, Browser, BrowserTest, Kill};
use support::repo;

/// The test's configuration: the shipped one, with this vhost, paths inside `dir`, and `listen`.
fn write_config(dir: &Path, url: &str, listen: &str, extra_console: &str) -> PathBuf {
    let schemas = std::env::var_os("HELSEMELDING_XSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("xsd"));
    let path = helsemelding::config::scratch::write_config(&repo(), dir, url, &schemas)
        .expect("config written");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("http_listen = \"\"", &format!("http_listen = {listen:?}"));
    // Keys for [console] go right under its header, wherever the section sits in the file.
    assert!(
        text.contains("\n[console]\n"),
        "the shipped config has a [console] section"
    );
    let text = text.replacen("\n[console]\n", &format!("\n[console]\n{extra_console}"), 1);
    // The intake in two partitions (plugin rabbitmq_consistent_hash_exchange, enabled by .ci/run):
    // the overview lists them with the intake, not among the party queues. The shipped budget
    // is left out so that its default fits the partitions.
    let text = text.replacen("\n[amqp]\n", "\n[amqp]\npartitions = 2\n", 1);
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("max_inflight_bytes"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn serve(config: &Path, dir: &Path) -> Kill {
    let stderr = std::fs::File::create(dir.join("gateway.stderr")).unwrap();
    Kill(
        Command::new(env!("CARGO_BIN_EXE_helsemelding"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("helsemelding serve starts"),
    )
}

fn wait_healthy(port: u16, gateway: &mut Kill, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(st) = gateway.0.try_wait().unwrap() {
            panic!(
                "gateway exited {st}: {}",
                std::fs::read_to_string(dir.join("gateway.stderr")).unwrap_or_default()
            );
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http(port, "GET", "/health", &[], b"").0 == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "gateway not healthy in time");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn replay(config: &Path, sender: u32, fixture: &str) {
    let pki = repo().join("fixtures/gateway-pki/parties");
    let out = Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(["replay", "--config"])
        .arg(config)
        .arg("--key")
        .arg(pki.join(format!("{sender}-sign.key")))
        .arg("--cert")
        .arg(pki.join(format!("{sender}-sign.pem")))
        .arg(repo().join("fixtures/messages").join(fixture))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay {fixture}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The routing log's decisions, once it holds at least `n`.
fn decisions(log: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let ds: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if ds.len() >= n {
            return ds;
        }
        assert!(
            Instant::now() < deadline,
            "only {} decisions in the routing log",
            ds.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let Some(BrowserTest {
        chromium,
        chromedriver,
        vhost,
        dir,
        port,
    }) = browser_test().await
    else {
        return;
    };
    let config = write_config(dir.path(), vhost.url(), &format!("127.0.0.1:{port}"), "");
    let mut gateway = serve(&config, dir.path());
    tokio::task::block_in_place(|| wait_healthy(port, &mut gateway, dir.path()));

    // Real signed traffic: three deliveries (one with a copy recipient) and one E21 refusal.
    let log = dir.path().join("routing.jsonl");
    for (sender, f) in [
        (82001, "delivered/foresporsel-gp-to-nursing-home.xml"),
        (82001, "delivered/foresporsel-with-copy-to-home-care.xml"),
        (81001, "delivered/notat-nursing-home-to-gp-person.xml"),
        (82001, "rejected/E21-unknown-level2-service.xml"),
    ] {
        replay(&config, sender, f);
    }
    let all = tokio::task::block_in_place(|| decisions(&log, 5));
    let wanted = "6a1f0c2e-0003-4d6e-9a51-000000000003"; // the one with a copy recipient
    let of_it: Vec<&Value> = all.iter().filter(|d| d["msg_id"] == wanted).collect();
    assert_eq!(of_it.len(), 2, "two recipients in the routing log: {all:?}");

    let base = format!("http://127.0.0.1:{port}");
    let browser = tokio::task::block_in_place(|| {
        Browser::start(
            &chromium,
            &chromedriver,
            &repo().join("target/console-screenshots"),
        )
    });
    tokio::task::block_in_place(|| {
        // Overview: health, queues, per-minute counts.
        browser.go(&format!("{base}/console/"));
        assert_eq!(browser.title(), "Overview · helsemelding");
        let body = browser.text("main");
        assert!(
            body.contains("connected") && body.contains("gateway_dead_letter"),
            "{body}"
        );
        assert!(body.contains("Decisions per minute"), "{body}");
        assert!(
            body.contains("gateway_inbound.1") && body.contains("gateway_inbound.2"),
            "the intake partitions are listed: {body}"
        );
        // "The other Q party queues (… of N parties) are empty": Q and the party queues listed
        // make 2 N, so no partition is counted among them.
        let note = body
            .split("The other ")
            .nth(1)
            .expect("the quiet party queues note");
        let quiet: usize = note.split(' ').next().unwrap().parse().unwrap();
        let parties: usize = note
            .split(" of ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("the note names the parties");
        let listed = body
            .split_whitespace()
            .filter(|w| {
                let her = w.trim_end_matches("_async").trim_end_matches("_error");
                her.len() < w.len() && !her.is_empty() && her.bytes().all(|b| b.is_ascii_digit())
            })
            .count();
        assert_eq!(quiet + listed, 2 * parties, "{body}");
        browser.screenshot("overview");

        // Search the MsgId on the decisions page, follow it to its page.
        browser.go(&format!("{base}/console/decisions"));
        browser.type_into("input[name=msg]", wanted);
        browser.click("form[action='/console/decisions'] button");
        let rows = browser.all_text("main table tr");
        assert_eq!(rows.len(), 3, "header + two decisions: {rows:?}");
        browser.screenshot("search");
        browser.click(&format!("a[href='/console/message/{wanted}']"));
        assert_eq!(browser.title(), format!("Message {wanted} · helsemelding"));
        browser.screenshot("message");

        // The figures on the page equal the routing log's: per recipient, delivered → state
        // Delivered; the decisions table shows each line's outcome and elapsed time.
        let rows = browser.all_text("main table tr");
        for d in &of_it {
            let (from, to) = (d["from_her"].to_string(), d["to_her"].to_string());
            let elapsed = format!("{:.1}", d["elapsed_ms"].as_f64().unwrap());
            assert_eq!(d["outcome"], "delivered");
            let words = |r: &String| r.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
            let recipient = rows
                .iter()
                .find(|r| words(r).first() == Some(&to))
                .unwrap_or_else(|| panic!("no row for recipient {to}: {rows:?}"));
            let role = if to == "81002" { "COP" } else { "PRIM" };
            assert!(
                words(recipient).contains(&"Delivered".to_owned())
                    && words(recipient).contains(&role.to_owned()),
                "{recipient}"
            );
            let line = rows
                .iter()
                .find(|r| {
                    let w = words(r);
                    w.contains(&"delivered".to_owned())
                        && w.contains(&from)
                        && w.contains(&to)
                        && w.contains(&wanted.to_owned())
                        && w.last() == Some(&elapsed)
                })
                .unwrap_or_else(|| panic!("routing-log line {d} not on the page: {rows:?}"));
            println!("page row for {to}: {recipient} | {line}");
        }

        // Markup and script in a search are shown as text, never executed.
        let evil =
            "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">";
        browser.go(&format!("{base}/console/decisions"));
        browser.type_into("input[name=msg]", evil);
        browser.type_into("input[name=her]", "<b>81001</b>");
        browser.click("form[action='/console/decisions'] button");
        assert_eq!(browser.title(), "Decisions · helsemelding");
        let shown = browser.text("main");
        assert!(
            shown.contains("HER-id \"<b>81001</b>\" is not a number"),
            "{shown}"
        );
        let value = browser.eval("return document.querySelector('input[name=msg]').value");
        assert_eq!(value, evil, "the search is kept as text in the form");
        assert_eq!(
            browser
                .eval("return document.querySelectorAll('main script, main img, main b b').length"),
            0
        );
        browser.screenshot("markup-search");
        // The MsgId box in the header goes to the message page, escaped there too.
        browser.type_into("input[name=id]", evil);
        browser.click("header form button");
        assert_eq!(browser.title(), format!("Message {evil} · helsemelding"));
        assert!(browser.text("main").contains("Unknown MsgId <script>"));
        assert_eq!(browser.eval("return document.scripts.length"), 0);
    });

    // Bound beyond localhost: credentials required.
    drop(gateway);
    let refused = Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(["check-config", "--config"])
        .arg(write_config(
            dir.path(),
            vhost.url(),
            &format!("0.0.0.0:{port}"),
            "",
        ))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stdout).into_owned()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("not a loopback address") && said.contains("token_file"),
        "{said}"
    );

    let token = "c0ffee".repeat(8);
    let token_file = dir.path().join("console-token");
    std::fs::write(&token_file, &token).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let port = free_port();
    let config = write_config(
        dir.path(),
        vhost.url(),
        &format!("0.0.0.0:{port}"),
        &format!("token_file = {:?}\n", token_file.display().to_string()),
    );
    let mut gateway = serve(&config, dir.path());
    tokio::task::block_in_place(|| wait_healthy(port, &mut gateway, dir.path()));
    let bearer = format!("Bearer {token}");
    tokio::task::block_in_place(|| {
        let (status, head, body) = http(port, "GET", "/console/", &[], b"");
        println!("refused without credentials: {head}\n{body}");
        assert_eq!(status, 401, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{head}"
        );
        assert_eq!(
            http(
                port,
                "GET",
                "/console/",
                &[("authorization", "Bearer nope")],
                b""
            )
            .0,
            401
        );
        let (status, head, body) =
            http(port, "GET", "/console/", &[("authorization", &bearer)], b"");
        assert_eq!(status, 200, "{body}");
        assert!(
            head.contains("content-security-policy: default-src 'none'"),
            "{head}"
        );
        // Metrics and health stay as they were.
        assert_eq!(http(port, "GET", "/metrics", &[], b"").0, 200);
        browser.go(&format!("http://127.0.0.1:{port}/console/"));
        browser.screenshot("refused");
        let source = browser.s("GET", "/source", None);
        let source = source.as_str().unwrap_or("");
        assert!(
            source.contains("Credentials required") && !source.contains("Overview</h1>"),
            "{source}"
        );
    });

    // A dead letter, redriven from the console: confirmation first, logged with who.
    let conn = helsemelding::amqp::connection::connect(&vhost.settings("console-test"))
        .await
        .unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    publisher
        .publish_with_properties(
            Route::Queue("gateway_dead_letter"),
            lapin::BasicProperties::default().with_message_id("dead-1".into()),
            b"not a message",
        )
        .await
        .expect("a dead letter, confirmed");
    publisher.close().await;
    let _ = conn.close(200, "done".into()).await;
    tokio::task::block_in_place(|| {
        let auth = [("authorization", bearer.as_str())];
        let (status, _, page) = http(port, "GET", "/console/dead-letters", &auth, b"");
        assert!(status == 200 && page.contains("1 message(s)"), "{page}");
        let (status, _, confirm) = http(port, "GET", "/console/redrive", &auth, b"");
        assert_eq!(status, 200, "{confirm}");
        let token_at = confirm
            .find("name=\"token\" value=\"")
            .expect("a one-time token")
            + 20;
        let once = &confirm[token_at..token_at + 32];
        let form = [
            ("content-type", "application/x-www-form-urlencoded"),
            auth[0],
        ];
        // Not typed: nothing moves, and the token is used up.
        let (status, _, _) = http(
            port,
            "POST",
            "/console/redrive",
            &form,
            format!("token={once}&limit=1&confirm=").as_bytes(),
        );
        assert_eq!(status, 400);
        let (status, _, _) = http(
            port,
            "POST",
            "/console/redrive",
            &form,
            format!("token={once}&limit=1&confirm=redrive").as_bytes(),
        );
        assert_eq!(status, 403, "a used confirmation does not work twice");
        let (_, _, confirm) = http(port, "GET", "/console/redrive", &auth, b"");
        let token_at = confirm.find("name=\"token\" value=\"").unwrap() + 20;
        let once = &confirm[token_at..token_at + 32];
        let (status, _, done) = http(
            port,
            "POST",
            "/console/redrive",
            &form,
            format!("token={once}&limit=1&confirm=redrive").as_bytes(),
        );
        assert!(
            status == 200 && done.contains("moved 1 message(s)"),
            "{done}"
        );
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            logged.contains("console-redrive by bearer-token: moved 1 message(s)"),
            "{logged}"
        );
    });
    drop(browser);
    drop(gateway);
    let _ = vhost.delete().await;
}
