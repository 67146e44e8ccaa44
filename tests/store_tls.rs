//! The PostgreSQL store over TLS (`[store] url = "postgres://…?sslmode=verify-full&sslrootcert=…"`),
//! against a PostgreSQL 15 server of the test's own: initialised in a temporary directory, listening
//! on 127.0.0.1 only, accepting nothing but TLS (`hostssl` in pg_hba.conf), with a server
//! certificate for 127.0.0.1 from a CA the test makes with openssl. The machine's own PostgreSQL on
//! :5432 is not touched. Needs root (the server runs as the `postgres` user, as CI has); elsewhere
//! the test says why it skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use helsemelding::store::pg::{parse_url, schema_status, PgStore};

const BIN: &str = "/usr/lib/postgresql/15/bin";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn as_postgres(args: &[&str]) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).args(args);
    c
}

/// A CA and a server certificate for 127.0.0.1 signed by it; another CA that signed nothing.
fn make_pki(dir: &Path) {
    let ssl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    for ca in ["ca", "other-ca"] {
        ssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=helsemelding test {ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ]);
    }
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    ssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    ssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}

/// The server; stopped (immediately) when dropped.
struct TlsServer {
    dir: tempfile::TempDir,
    port: u16,
}

impl TlsServer {
    fn start() -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        make_pki(dir.path());
        let data = dir.path().join("data");
        run(Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path()));
        run(Command::new("chmod").arg("0700").arg(dir.path()));
        run(Command::new("chmod")
            .arg("0600")
            .arg(dir.path().join("server.key")));
        let d = data.to_str().unwrap();
        run(&mut as_postgres(&[
            &format!("{BIN}/initdb"),
            "-D",
            d,
            "-A",
            "trust",
            "-U",
            "postgres",
        ]));
        // TLS only: no `host` line, so a plain TCP connection is refused by the server itself.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let port = free_port();
        let p = dir.path().to_str().unwrap();
        let opts = format!(
            "-p {port} -k {p} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={p}/server.pem -c ssl_key_file={p}/server.key"
        );
        run(&mut as_postgres(&[
            &format!("{BIN}/pg_ctl"),
            "-D",
            d,
            "-o",
            &opts,
            "-l",
            &format!("{p}/server.log"),
            "-w",
            "start",
        ]));
        TlsServer { dir, port }
    }

    fn ca(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.pem"))
    }

    fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres{query}",
            self.port
        )
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let d = self.dir.path().join("data");
        let _ = as_postgres(&[
            &format!("{BIN}/pg_ctl"),
            "-D",
            d.to_str().unwrap(),
            "-m",
            "immediate",
            "stop",
        ])
        .output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        eprintln!("store_tls: skipped — needs root to run a PostgreSQL server as user postgres (CI runs as root)");
    }
    root && Path::new(BIN).join("initdb").exists()
}

#[tokio::test]
async fn the_store_speaks_tls_to_a_verified_server_and_refuses_one_it_cannot_verify() {
    if !can_run() {
        return;
    }
    let server = TlsServer::start();
    let ca = server.ca("ca");
    let good = server.url(&format!(
        "?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ));
    let config = parse_url(&good).unwrap();
    assert!(config.tls());
    // A TLS-only server: opening (and migrating) the store works, so it went over TLS.
    let store = PgStore::open(&config).await.expect("store over TLS");
    drop(store);
    let status = schema_status(&config).await.unwrap();
    assert!(
        status.to_string().contains("no pending migrations"),
        "{status}"
    );

    // The same server without TLS: refused by the server, and said so.
    let plain = schema_status(&parse_url(&server.url("")).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        plain.contains("no encryption") || plain.contains("pg_hba"),
        "{plain}"
    );

    // A CA that did not sign the server's certificate: refused by us, naming the certificate.
    let wrong = server.url(&format!(
        "?sslmode=verify-full&sslrootcert={}",
        server.ca("other-ca").display()
    ));
    let err = schema_status(&parse_url(&wrong).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // The server's name is checked too: `localhost` is in the certificate, another name is not.
    let by_name = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        server.port,
        ca.display()
    );
    schema_status(&parse_url(&by_name).unwrap())
        .await
        .expect("localhost is in the SAN");
}

#[test]
fn tls_settings_that_cannot_work_are_refused_before_connecting() {
    let cases = [
        ("postgres://h/db?sslmode=require", "without sslrootcert"),
        ("postgres://h/db?sslmode=verify-full", "without sslrootcert"),
        ("postgres://h/db?sslmode=sometimes", "use disable, require"),
        (
            "postgres://h/db?sslmode=disable&sslrootcert=/x.pem",
            "say which you mean",
        ),
        (
            "postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
    ];
    for (url, says) in cases {
        let err = parse_url(url).unwrap_err();
        assert!(err.contains(says), "{url}: {err}");
    }
    assert!(!parse_url("postgres://h/db").unwrap().tls());
    assert!(
        !parse_url("postgres://h/db?sslmode=disable&application_name=x")
            .unwrap()
            .tls()
    );
}
