//! A gateway configuration of its own for one test, chaos scenario or benchmark run (test and lab
//! support: the end-to-end tests, `helsemelding-lab chaos` and `bench` all start from it).
//!
//! Input: the shipped `config/gateway.toml` + `config/parties.toml` (under `base`, the repository
//! root) and a [`Scratch`]: a broker URL (a throw-away vhost), the schema directory, and optionally
//! the prefetch and a local metrics port. Output: `<dir>/config/gateway.toml` and
//! `<dir>/parties.toml`, identical to the shipped ones except the broker URL, the state and
//! routing-log paths (inside `dir`), the HTTP endpoint (none unless a port is given: several
//! gateways run at once on one machine), the prefetch when given, and absolute paths for everything
//! else — and `require_encryption = false`: the tests and lab tools that start from here send signed
//! plaintext, so they are tests of that policy; the encryption tests (tests/encryption.rs) turn the
//! shipped `true` back on, with the shipped keys.
//! Failure: an [`std::io::Error`] naming the file.

use std::io;
use std::path::{Path, PathBuf};

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The quoted value of a `key = "value"` line, if any.
fn quoted_value(line: &str) -> Option<&str> {
    let v = line.split_once('=')?.1.trim();
    v.strip_prefix('"')?.split('"').next()
}

/// What differs from the shipped configuration, besides the paths inside the scratch directory.
#[derive(Debug, Clone)]
pub struct Scratch<'a> {
    /// The broker URL (normally a throw-away vhost's).
    pub url: &'a str,
    /// The installed official schemas.
    pub schemas: &'a Path,
    /// Consumer prefetch instead of the shipped one.
    pub prefetch: Option<u16>,
    /// Serve metrics (and the console) on `127.0.0.1:<port>`; none when `None`.
    pub metrics_port: Option<u16>,
}

/// Writes a configuration with the shipped prefetch and no HTTP endpoint; returns its path.
pub fn write_config(base: &Path, dir: &Path, url: &str, schemas: &Path) -> io::Result<PathBuf> {
    write(
        base,
        dir,
        &Scratch {
            url,
            schemas,
            prefetch: None,
            metrics_port: None,
        },
    )
}

/// Writes the configuration of the module comment under `dir` and returns its path.
pub fn write(base: &Path, dir: &Path, scratch: &Scratch<'_>) -> io::Result<PathBuf> {
    let (url, schemas) = (scratch.url, scratch.schemas);
    let shipped_path = base.join("config/gateway.toml");
    let shipped =
        std::fs::read_to_string(&shipped_path).map_err(|e| with_path(e, &shipped_path))?;
    let abs = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.display().to_string()
        } else {
            base.join(p).display().to_string()
        }
    };
    let mut out = String::new();
    for line in shipped.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let replaced = match (key, quoted_value(line)) {
            ("url", _) => format!("url = {url:?}"),
            ("signing_key" | "signing_cert" | "trust_dir", Some(v)) => {
                format!("{key} = {:?}", abs(v))
            }
            ("register", _) => format!(
                "register = {:?}",
                dir.join("parties.toml").display().to_string()
            ),
            ("schemas", _) => format!("schemas = {:?}", schemas.display().to_string()),
            ("state", _) => format!("state = {:?}", dir.join("state").display().to_string()),
            ("routing_log", _) => format!(
                "routing_log = {:?}",
                dir.join("routing.jsonl").display().to_string()
            ),
            ("http_listen", _) => match scratch.metrics_port {
                Some(port) => format!("http_listen = \"127.0.0.1:{port}\""),
                None => "http_listen = \"\"".to_owned(),
            },
            ("require_encryption", _) => "require_encryption = false".to_owned(),
            // `encryption_keys` entries: inline tables of paths relative to the repository root.
            (k, _) if k.starts_with("{ key") => {
                line.replace("\"fixtures/", &format!("\"{}/fixtures/", base.display()))
            }
            ("prefetch", _) => match scratch.prefetch {
                Some(n) => format!("prefetch = {n}"),
                None => line.to_owned(),
            },
            _ => line.to_owned(),
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    let parties_path = base.join("config/parties.toml");
    // Certificate paths in the register are relative to the repository root.
    let parties = std::fs::read_to_string(&parties_path)
        .map_err(|e| with_path(e, &parties_path))?
        .replace("\"fixtures/", &format!("\"{}/fixtures/", base.display()));
    std::fs::create_dir_all(dir.join("config")).map_err(|e| with_path(e, dir))?;
    let register = dir.join("parties.toml");
    std::fs::write(&register, parties).map_err(|e| with_path(e, &register))?;
    let path = dir.join("config/gateway.toml");
    std::fs::write(&path, out).map_err(|e| with_path(e, &path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_configuration_loads_and_points_into_dir() {
        let base = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!(
            "hm-scratch-config-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let schemas = base.join("../shared/standards/xsd");
        let path = write_config(
            &base,
            &dir,
            "amqp://guest:guest@127.0.0.1:5672/hm-x",
            &schemas,
        )
        .unwrap();
        let c = crate::config::GatewayConfig::load(&path).unwrap_or_else(|ps| panic!("{ps:?}"));
        assert_eq!(c.amqp.url, "amqp://guest:guest@127.0.0.1:5672/hm-x");
        assert_eq!(c.paths.state, dir.join("state"));
        assert_eq!(c.paths.http_listen, None);
        assert!(c.gateway.signing_key.is_absolute() && c.gateway.signing_key.exists());
        assert!(!c.policy.require_encryption);
        assert!(!c.gateway.encryption_keys.is_empty());
        for k in &c.gateway.encryption_keys {
            assert!(
                k.key.is_absolute() && k.key.exists() && k.cert.exists(),
                "{k:?}"
            );
        }
        let shipped = crate::config::GatewayConfig::load(&base.join("config/gateway.toml"))
            .unwrap_or_else(|ps| panic!("{ps:?}"));
        assert_eq!(c.amqp.prefetch, shipped.amqp.prefetch);
        let path = write(
            &base,
            &dir,
            &Scratch {
                url: "amqp://guest:guest@127.0.0.1:5672/hm-x",
                schemas: &schemas,
                prefetch: Some(7),
                metrics_port: Some(9),
            },
        )
        .unwrap();
        let c = crate::config::GatewayConfig::load(&path).unwrap_or_else(|ps| panic!("{ps:?}"));
        assert_eq!(c.amqp.prefetch, 7);
        assert_eq!(c.paths.http_listen, Some("127.0.0.1:9".parse().unwrap()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_shipped_configuration_is_named() {
        let err = write_config(
            Path::new("/nonexistent"),
            Path::new("/tmp"),
            "amqp://x",
            Path::new("/x"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/config/gateway.toml"),
            "{err}"
        );
    }
}
