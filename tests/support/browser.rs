//! Debian's Chromium, headless, driven through chromedriver's WebDriver HTTP API (a small
//! blocking client, no WebDriver crate): the browser tests (console_browser.rs,
//! insight_browser.rs) look at pages as a person would. Also a one-exchange HTTP/1.1 client for
//! requests outside the browser, and [`Kill`] for child processes.
//!
//! [`tools`] finds `chromium` and `chromedriver` on PATH; without them a test prints why and
//! passes — except under `CI=true` (`.ci/run` installs both), where their absence fails it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use serde_json::{json, Value};

/// `chromium` and `chromedriver`, or `None` (after saying why) when a test should skip.
pub fn tools() -> Option<(PathBuf, PathBuf)> {
    match (which("chromium"), which("chromedriver")) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but chromium or chromedriver is missing (.ci/run installs them)"
            );
            println!("SKIPPED: chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
            None
        }
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, however it ends.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 exchange (connection closed after it): (status, headers, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    // Read the head, then exactly content-length bytes (chromedriver keeps the connection open).
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the end of the head");
        out.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&out[..head_end]).into_owned();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "this small client reads content-length bodies only: {head}"
    );
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let mut body = out[head_end + 4..].to_vec();
    match length {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "connection closed inside the body");
                body.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            s.read_to_end(&mut body).unwrap();
        }
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, body)
}

/// A WebDriver session on chromedriver.
pub struct Browser {
    port: u16,
    session: String,
    /// Where [`Browser::screenshot`] writes.
    shots: PathBuf,
    _driver: Kill,
}

impl Browser {
    /// A headless session; screenshots go to `shots` (created when the first is taken).
    pub fn start(chromium: &Path, chromedriver: &Path, shots: &Path) -> Browser {
        let port = free_port();
        let driver = Kill(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        // The browser's console (errors, CSP violations) is kept for `console_log`.
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"]
            }
        }}});
        let mut b = Browser {
            port,
            session: String::new(),
            shots: shots.to_path_buf(),
            _driver: driver,
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        b
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, _, text) = http(
            self.port,
            method,
            path,
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {status} {e}: {text}"));
        v["value"].clone()
    }

    pub fn s(&self, method: &str, rest: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{rest}", self.session);
        self.call(method, &path, body)
    }

    pub fn go(&self, url: &str) {
        self.s("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn title(&self) -> String {
        self.s("GET", "/title", None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The element at `css`, or None.
    pub fn find(&self, css: &str) -> Option<String> {
        let v = self.s(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|id| id.as_str())
            .map(str::to_owned)
    }

    pub fn element(&self, css: &str) -> String {
        self.find(css)
            .unwrap_or_else(|| panic!("no element {css} on {}", self.text("body")))
    }

    pub fn all_text(&self, css: &str) -> Vec<String> {
        let v = self.s(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_object()?.values().next()?.as_str().map(str::to_owned))
                    .map(|id| self.s("GET", &format!("/element/{id}/text"), None))
                    .map(|t| t.as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn text(&self, css: &str) -> String {
        match self.find(css) {
            Some(id) => self
                .s("GET", &format!("/element/{id}/text"), None)
                .as_str()
                .unwrap_or("")
                .to_owned(),
            None => String::new(),
        }
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.s("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.s(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks what navigates, and waits until the browser is on the new page and has loaded it.
    pub fn click(&self, css: &str) {
        let before = self.s("GET", "/url", None);
        let id = self.element(css);
        self.s("POST", &format!("/element/{id}/click"), Some(json!({})));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.s("GET", "/url", None) == before
            || self.eval("return document.readyState") != "complete"
        {
            assert!(
                Instant::now() < deadline,
                "{css} did not lead to a new page"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a script in the page (WebDriver's own channel, not the page's) and returns its value.
    pub fn eval(&self, script: &str) -> Value {
        self.s(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// A PNG of the viewport, `<shots>/<name>.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.s("GET", "/screenshot", None);
        let png = Base64::decode_vec(v.as_str().expect("screenshot is base64")).unwrap();
        std::fs::create_dir_all(&self.shots).unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }

    /// The browser console's entries since the last call (chromedriver's `se/log`), each
    /// `(level, message)`: script errors, CSP violations, failed loads, `console.*` output.
    pub fn console_log(&self) -> Vec<(String, String)> {
        let v = self.s("POST", "/se/log", Some(json!({"type": "browser"})));
        v.as_array()
            .unwrap_or_else(|| panic!("chromedriver gave no browser log: {v}"))
            .iter()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_owned(),
                    e["message"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// Sets the window's outer size (a taller window makes a longer screenshot).
    pub fn resize(&self, width: u32, height: u32) {
        self.s(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// A Chrome DevTools command through chromedriver (`goog/cdp/execute`).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.s(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
    }

    /// The page printed (WebDriver Print, A4 portrait) to `<shots>/<name>.pdf`; its bytes.
    pub fn print_pdf(&self, name: &str) -> Vec<u8> {
        let v = self.s(
            "POST",
            "/print",
            Some(json!({"page": {"width": 21.0, "height": 29.7}, "background": true})),
        );
        let pdf = Base64::decode_vec(v.as_str().expect("print gives base64")).unwrap();
        std::fs::create_dir_all(&self.shots).unwrap();
        let path = self.shots.join(format!("{name}.pdf"));
        std::fs::write(&path, &pdf).unwrap();
        println!("printed: {}", path.display());
        pdf
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            self.call("DELETE", &path, None);
        }
    }
}

/// What a browser test starts from: Debian's Chromium and chromedriver, a vhost of its own, a
/// directory and a free port for `serve`.
pub struct BrowserTest {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
    pub vhost: helsemelding::amqp::testing::TestVhost,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// `None` when the browser is missing ([`tools`] says why).
pub async fn browser_test() -> Option<BrowserTest> {
    let (chromium, chromedriver) = tools()?;
    let vhost = helsemelding::amqp::testing::TestVhost::create()
        .await
        .expect("test vhost (is RabbitMQ running?)");
    Some(BrowserTest {
        chromium,
        chromedriver,
        vhost,
        dir: tempfile::tempdir().unwrap(),
        port: free_port(),
    })
}
