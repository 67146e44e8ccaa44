//! Reloading without a restart (issue 16, item 2): what SIGHUP (and `helsemelding reload`, which
//! sends it) does in `serve`.
//!
//! Input: the path of `gateway.toml` the gateway was started with, and the running gateway.
//! The configuration, the address register, the trust directory and every file they name are read
//! and checked exactly as `check-config` and `serve` check them (`crate::setup::load`, through
//! `cli::load`). Output, when everything checks out: new parties' queues are declared (before any
//! message can be routed to them), the HN.Msg bindings follow the register, and the new assessment
//! [`Context`] is swapped in between messages — an assessment takes one snapshot of the context, so
//! a message already being assessed finishes with the old set and none sees half of each. One log
//! line says what changed. Removed parties' queues are left alone: they may still hold messages.
//!
//! What can change: the register (parties, their certificates, message types, users), the trust
//! directory (anchors, intermediates, CRLs), the schema directory, `policy.require_signature` and
//! `policy.reject_unknown_level2`. Everything else is fixed while the process runs (the broker
//! connection, the listen address, the state directory and store, the signing identity, …): a
//! changed value is named in the log as "needs a restart" and the running value stays.
//!
//! Failure: any problem (every one, with `file:line` as `check-config` prints them), or a broker
//! that refuses the new parties' queues, leaves the running set untouched; the problems are logged
//! and `/metrics` shows `helsemelding_reload_last_success 0` until a reload succeeds.
//!
//! CRLs: the refresher (`crate::revocation`) swaps CRLs through the same [`ContextCell`], and the two
//! writers are serialised. A reload keeps, per CA, whichever CRL supersedes the other — the one it
//! read from disk or the one in use — so neither undoes the other.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use tracing::{error, info, warn};

use super::assess::Context;
use super::server::Inner;
use crate::cms::TrustStore;
use crate::config::GatewayConfig;
use crate::ids::HerId;

/// What an applied reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Parties new in the register (their queues were declared).
    pub added: Vec<HerId>,
    /// Parties no longer in the register (their queues are left as they are).
    pub removed: Vec<HerId>,
    /// Parties still there whose entry or signing certificates changed.
    pub changed: Vec<HerId>,
    /// Certificate authorities of the trust directory, new and gone (subject names).
    pub authorities_added: Vec<String>,
    pub authorities_removed: Vec<String>,
    /// CAs whose CRL in use is now another one.
    pub crls_changed: usize,
    /// Settings that differ from the running ones but need a restart (ignored until then).
    pub needs_restart: Vec<String>,
}

impl Reloaded {
    /// One line for the log: what changed, or that nothing did.
    pub fn summary(&self) -> String {
        let hers = |v: &[HerId]| {
            v.iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("parties added: {}", hers(&self.added)));
        }
        if !self.removed.is_empty() {
            parts.push(format!(
                "parties removed: {} (their queues are kept)",
                hers(&self.removed)
            ));
        }
        if !self.changed.is_empty() {
            parts.push(format!(
                "parties changed (entry or certificates): {}",
                hers(&self.changed)
            ));
        }
        if !self.authorities_added.is_empty() {
            parts.push(format!("CAs added: {}", self.authorities_added.join("; ")));
        }
        if !self.authorities_removed.is_empty() {
            parts.push(format!(
                "CAs removed: {}",
                self.authorities_removed.join("; ")
            ));
        }
        if self.crls_changed > 0 {
            parts.push(format!("CRLs replaced: {}", self.crls_changed));
        }
        if parts.is_empty() {
            parts.push("no change to parties, certificates or CRLs".into());
        }
        parts.join(", ")
    }
}

/// Why a reload was refused: every problem found. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s); the running configuration stays in use", problems.len())]
pub struct ReloadFailed {
    /// One line each, as `check-config` prints them (`file:line: key: what`).
    pub problems: Vec<String>,
}

/// Reloads, logs the outcome and records it in the metrics (the module documentation says how).
pub(super) async fn reload(inner: &Arc<Inner>, config: &Path) -> Result<Reloaded, ReloadFailed> {
    info!(config = %config.display(), "reload requested: reading and checking the configuration");
    let path = config.to_path_buf();
    // Loading compiles the schemas and reads every certificate: CPU and file work, kept off the
    // runtime's threads.
    let loaded = tokio::task::spawn_blocking(move || super::cli::load(&path))
        .await
        .unwrap_or_else(|e| Err(vec![format!("loading the configuration failed: {e}")]));
    let outcome = match loaded {
        Ok(l) => apply(inner, l).await,
        Err(problems) => Err(ReloadFailed { problems }),
    };
    inner
        .metrics
        .reload
        .record(outcome.is_ok(), inner.clock.now());
    match &outcome {
        Ok(r) => {
            info!("configuration reloaded: {}", r.summary());
            if !r.needs_restart.is_empty() {
                warn!(
                    "reload: changed, but only a restart applies them (the running values stay): {}",
                    r.needs_restart.join(", ")
                );
            }
        }
        Err(f) => {
            error!(
                config = %config.display(),
                "reload failed, {} problem(s); the running configuration stays in use",
                f.problems.len()
            );
            for p in &f.problems {
                error!("reload problem: {p}");
            }
        }
    }
    outcome
}

/// Every party a session declares queues for: the register's and the gateway's own.
fn party_list(ctx: &Context) -> Vec<HerId> {
    let mut parties: Vec<HerId> = ctx.register.parties().iter().map(|p| p.her_id).collect();
    if !parties.contains(&ctx.gateway_her) {
        parties.push(ctx.gateway_her);
    }
    parties
}

async fn apply(inner: &Arc<Inner>, loaded: super::cli::Loaded) -> Result<Reloaded, ReloadFailed> {
    let old = inner.ctx.load();
    let mut new = loaded.context;
    // The gateway's identity, and the size bounds the broker consumer was set up with, are the
    // process's own: they stay (reported below when the file says otherwise).
    if !new.register.contains(old.gateway_her) {
        return Err(ReloadFailed {
            problems: vec![format!(
                "the running gateway's HER-id {} is not a party in the new register (changing gateway.her_id needs a restart)",
                old.gateway_her
            )],
        });
    }
    new.gateway_her = old.gateway_her;
    new.policy.max_message_bytes = old.policy.max_message_bytes;
    new.policy.xml = old.policy.xml;
    let needs_restart = inner
        .settings
        .config
        .as_ref()
        .map(|running| needs_restart(running, &loaded.config))
        .unwrap_or_default();

    let before = party_list(&old);
    let after = party_list(&new);
    let added: Vec<HerId> = after
        .iter()
        .filter(|h| !before.contains(h))
        .copied()
        .collect();
    let removed: Vec<HerId> = before
        .iter()
        .filter(|h| !after.contains(h))
        .copied()
        .collect();

    // Queues first: a message routed to a new party must find its queue (a publish to a missing
    // queue comes back unroutable). A later session declares them too.
    inner.link.set_parties(after.clone());
    if let Err(e) = declare(inner, &added, &before, &after).await {
        inner.link.set_parties(before);
        return Err(ReloadFailed {
            problems: vec![format!(
                "broker: declaring the queues of the new parties failed: {e}"
            )],
        });
    }

    let changed: Vec<HerId> = new
        .register
        .parties()
        .iter()
        .filter(|p| {
            old.register.get(p.her_id).is_some_and(|o| o != *p)
                || old.fingerprints.get(&p.her_id) != new.fingerprints.get(&p.her_id)
        })
        .filter(|p| !added.contains(&p.her_id))
        .map(|p| p.her_id)
        .collect();

    let mut trust_diff = (Vec::new(), Vec::new(), 0);
    inner.ctx.update(|current| {
        let trust = match (new.trust.as_deref(), current.trust.as_deref()) {
            (Some(read), Some(in_use)) => Some(Arc::new(keep_newer_crls(read, in_use))),
            _ => new.trust.clone(),
        };
        trust_diff = trust_changes(current.trust.as_deref(), trust.as_deref());
        Some(Context {
            trust,
            ..new.clone()
        })
    });
    inner.replace_certificates(loaded.certificates);
    let (authorities_added, authorities_removed, crls_changed) = trust_diff;
    Ok(Reloaded {
        added,
        removed,
        changed,
        authorities_added,
        authorities_removed,
        crls_changed,
        needs_restart,
    })
}

/// Declares the queues of `added` and makes the HN.Msg bindings follow the register, on the
/// current session. Without one there is nothing to do now: the next session declares every
/// party's queues (the supervisor has the new list) before it consumes.
async fn declare(
    inner: &Inner,
    added: &[HerId],
    before: &[HerId],
    after: &[HerId],
) -> Result<(), crate::amqp::error::AmqpError> {
    let topology = &inner.settings.topology;
    if added.is_empty() && topology.hnmsg_exchange.is_none() {
        return Ok(());
    }
    let Some(session) = inner.link.current() else {
        info!("reload: no broker session now; the next one declares the new parties' queues");
        return Ok(());
    };
    let channel =
        session.connection().create_channel().await.map_err(|e| {
            crate::amqp::error::AmqpError::classify("channel.open (reload)", "", "", e)
        })?;
    let result = async {
        topology.ensure_party_queues(&channel, added).await?;
        topology.sync_hnmsg_bindings(&channel, before, after).await
    }
    .await;
    let _ = channel.close(200, "reload declared".into()).await;
    result
}

/// `read` (the trust directory as just loaded) with, per CA, the CRL in use kept where it
/// supersedes the one read — the refresher may have installed it since the files were read.
fn keep_newer_crls(read: &TrustStore, in_use: &TrustStore) -> TrustStore {
    let ours = |issuer: &[u8]| read.authorities().iter().any(|a| a.subject_raw == issuer);
    read.with_crls(
        in_use
            .crls()
            .iter()
            .filter(|c| ours(c.issuer_raw()) && read.check_crl(c).is_ok())
            .cloned(),
    )
}

/// CAs added and removed (by name) and how many CAs' CRLs differ, from `before` to `after`.
fn trust_changes(
    before: Option<&TrustStore>,
    after: Option<&TrustStore>,
) -> (Vec<String>, Vec<String>, usize) {
    let names = |t: Option<&TrustStore>| -> BTreeSet<String> {
        t.map(|t| t.authorities().iter().map(|a| a.name.clone()).collect())
            .unwrap_or_default()
    };
    let crls = |t: Option<&TrustStore>| -> BTreeSet<Vec<u8>> {
        t.map(|t| t.crls().iter().map(|c| c.der().to_vec()).collect())
            .unwrap_or_default()
    };
    let (nb, na) = (names(before), names(after));
    let (cb, ca) = (crls(before), crls(after));
    (
        na.difference(&nb).cloned().collect(),
        nb.difference(&na).cloned().collect(),
        ca.difference(&cb).count(),
    )
}

/// The settings of `new` that differ from `running` and that only a restart applies, by key.
pub fn needs_restart(running: &GatewayConfig, new: &GatewayConfig) -> Vec<String> {
    let (r, n) = (running, new);
    let mut out: Vec<String> = Vec::new();
    // Whatever else differs (a key added to the configuration later) is not silently dropped
    // either: `rest` is the new configuration with every key listed below taken from the running
    // one, so what still differs is a key neither list knows.
    let mut rest = n.clone();
    // Keys a reload does not apply: named when they differ. Each key is listed once.
    macro_rules! restart_only {
        ($($name:literal => $($field:ident).+;)*) => {$(
            if r.$($field).+ != n.$($field).+ {
                out.push($name.to_owned());
            }
            rest.$($field).+ = r.$($field).+.clone();
        )*};
    }
    // Keys a reload applies (read again into the new context).
    macro_rules! reloadable {
        ($($($field:ident).+;)*) => {$( rest.$($field).+ = r.$($field).+.clone(); )*};
    }
    restart_only! {
        "amqp.url" => amqp.url;
        "amqp.urls" => amqp.fallback_urls;
        "amqp.tls_ca_file" => amqp.tls_ca_file;
        "amqp.prefetch" => amqp.prefetch;
        "amqp.heartbeat" => amqp.heartbeat;
        "amqp.max_inflight_bytes" => amqp.max_inflight_bytes;
        "amqp.hnmsg_exchange" => amqp.hnmsg_exchange;
        "amqp.partitions" => amqp.partitions;
        "amqp.prefer_partitions" => amqp.prefer_partitions;
        "gateway.her_id" => gateway.her_id;
        "gateway.signing_key" => gateway.signing_key;
        "gateway.signing_cert" => gateway.signing_cert;
        "paths.state" => paths.state;
        "paths.routing_log" => paths.routing_log;
        "paths.http_listen" => paths.http_listen;
        "policy.max_message_bytes" => policy.max_message_bytes;
        "policy.apprec_timeout" => policy.apprec_timeout;
        "policy.retention" => policy.retention;
        "[console]" => console;
        "[revocation]" => revocation;
        "[insight]" => insight;
        "[store]" => store;
    }
    reloadable! {
        config_path;
        base_dir;
        gateway.encryption_keys;
        paths.register;
        paths.trust_dir;
        paths.schemas;
        policy.require_signature;
        policy.require_encryption;
        policy.reject_unknown_level2;
    }
    if rest != *r {
        out.push("other settings".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn shipped() -> GatewayConfig {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/gateway.toml");
        GatewayConfig::load(&path).unwrap_or_else(|ps| panic!("{ps:?}"))
    }

    #[test]
    fn restart_only_settings_are_named_and_reloadable_ones_are_not() {
        let running = shipped();
        assert!(needs_restart(&running, &running).is_empty());
        let mut new = running.clone();
        new.amqp.url = "amqp://other:5672/%2f".into();
        new.paths.state = "/elsewhere".into();
        new.revocation.fetch = !new.revocation.fetch;
        // These a reload applies.
        new.paths.register = "/other/parties.toml".into();
        new.paths.trust_dir = "/other/trust".into();
        new.paths.schemas = "/other/xsd".into();
        new.policy.require_signature = !new.policy.require_signature;
        new.policy.reject_unknown_level2 = !new.policy.reject_unknown_level2;
        assert_eq!(
            needs_restart(&running, &new),
            ["amqp.url", "paths.state", "[revocation]"]
        );
    }

    #[test]
    fn encryption_settings_reload_and_insight_needs_a_restart() {
        let running = shipped();
        let mut new = running.clone();
        new.gateway.encryption_keys.reverse();
        new.gateway.encryption_keys.pop();
        new.policy.require_encryption = !new.policy.require_encryption;
        assert!(needs_restart(&running, &new).is_empty());
        new.insight.enabled = !new.insight.enabled;
        assert_eq!(needs_restart(&running, &new), ["[insight]"]);
    }

    #[test]
    fn the_summary_names_what_changed() {
        let r = Reloaded {
            added: vec![HerId(81001)],
            removed: vec![HerId(81002)],
            crls_changed: 1,
            ..Reloaded::default()
        };
        assert_eq!(
            r.summary(),
            "parties added: 81001, parties removed: 81002 (their queues are kept), CRLs replaced: 1"
        );
        assert_eq!(
            Reloaded::default().summary(),
            "no change to parties, certificates or CRLs"
        );
    }
}
