//! The operators' binary never injects faults: `helsemelding serve` with `HELSEMELDING_CRASH_AT`
//! set says that it ignores the variable, and then does its work — a message reaches the crash
//! point and is delivered, the process lives on and stops cleanly on SIGTERM. (Only
//! `helsemelding-lab serve` acts on the variable: lab/, src/gateway/crash.rs.)

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use helsemelding::amqp::testing::TestVhost;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_ignores_a_crash_point_with_a_warning_and_delivers() {
    let vhost = TestVhost::create()
        .await
        .expect("test vhost (is RabbitMQ running?)");
    let dir = tempfile::tempdir().unwrap();
    let config = helsemelding::config::scratch::write_config(
        &repo(),
        dir.path(),
        vhost.url(),
        &repo().join("../shared/standards/xsd"),
    )
    .unwrap();
    let stderr_path = dir.path().join("serve.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(["serve", "--config"])
        .arg(&config)
        // The very first message would be killed between publish and commit, were it armed.
        .env("HELSEMELDING_CRASH_AT", "publish-commit:1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("helsemelding serve starts");
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    // Its queues exist once it has started; then a sender publishes one message.
    let deadline = Instant::now() + Duration::from_secs(60);
    while vhost
        .queue_len("81001_async")
        .await
        .ok()
        .flatten()
        .is_none()
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "serve exited: {}",
            stderr()
        );
        assert!(Instant::now() < deadline, "no topology: {}", stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pki = repo().join("fixtures/gateway-pki/parties");
    let replay = Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(["replay", "--url", vhost.url(), "--key"])
        .arg(pki.join("82001-sign.key"))
        .arg("--cert")
        .arg(pki.join("82001-sign.pem"))
        .arg(repo().join("fixtures/messages/delivered/foresporsel-gp-to-nursing-home.xml"))
        .output()
        .unwrap();
    assert!(replay.status.success(), "{replay:?}");

    // Delivered, and the gateway is still there: the crash point was not armed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while vhost.queue_len("81001_async").await.ok().flatten() != Some(1) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "serve died at the crash point: {}",
            stderr()
        );
        assert!(Instant::now() < deadline, "not delivered: {}", stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "{}", stderr());
    let err = stderr();
    let why = if cfg!(feature = "fault-injection") {
        // A workspace build unifies features: the code is there, but this binary never allows it.
        "only helsemelding-lab serve injects faults"
    } else {
        "this build has no fault injection (cargo feature fault-injection is off)"
    };
    assert!(
        err.contains(&format!(
            "HELSEMELDING_CRASH_AT is set, but {why}: ignored, no crash point is armed"
        )),
        "{err}"
    );
    assert!(!err.contains("kill -9"), "{err}");

    // SAFETY: signalling our own child by its pid.
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", stderr());
    let _ = vhost.delete().await;
}
