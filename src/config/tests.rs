use std::path::{Path, PathBuf};

use super::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A config tree in a temporary directory: `root/config/gateway.toml` and `root/config/parties.toml`,
/// with the synthetic gateway certificate and key and a trust directory.
fn tree(gateway: &str, parties: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let cfg = root.path().join("config");
    std::fs::create_dir_all(cfg.join("trust")).unwrap();
    // The synthetic test PKI (fixtures/gateway-pki, made by `helsemelding-lab dev-pki`).
    let pki = repo().join("fixtures/gateway-pki/parties");
    for (from, to) in [
        ("90000-sign.pem", "gateway-90000-cert.pem"),
        ("90000-sign.key", "gateway-90000-key.pem"),
        ("80000-sign.pem", "hospital-sign.pem"),
    ] {
        std::fs::copy(pki.join(from), cfg.join(to)).unwrap();
    }
    std::fs::write(cfg.join("gateway.toml"), gateway).unwrap();
    std::fs::write(cfg.join("parties.toml"), parties).unwrap();
    let path = cfg.join("gateway.toml");
    (root, path)
}

const GOOD_GATEWAY: &str = r#"
[amqp]
url = "amqp://guest:guest@127.0.0.1:5672/%2f"

[gateway]
her_id = 90000
signing_key = "config/gateway-90000-key.pem"
signing_cert = "config/gateway-90000-cert.pem"

[paths]
register = "config/parties.toml"
trust_dir = "config/trust"
"#;

const GOOD_PARTIES: &str = r#"
[[party]]
her_id = 90000
name = "gateway"
accepts = ["APPREC"]

[[party]]
her_id = 80100
name = "Testsykehuset HF"
accepts = ["APPREC"]
certificates = ["config/hospital-sign.pem"]

[[party]]
her_id = 80101
name = "Testsykehuset HF, Medisinsk avdeling"
organisation_her_id = 80100
accepts = ["DIALOG_FORESPORSEL", "APPREC"]
certificates = ["config/hospital-sign.pem"]
amqp_users = ["ehr-hospital"]
"#;

fn keys(problems: &[ConfigProblem]) -> Vec<(Option<usize>, String)> {
    problems
        .iter()
        .map(|p| (p.line, p.key.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn the_shipped_configuration_is_valid() {
    let (cfg, register) = check(&repo().join("config/gateway.toml")).unwrap_or_else(|problems| {
        panic!(
            "{}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert_eq!(cfg.base_dir, repo());
    assert_eq!(cfg.paths.register, repo().join("config/parties.toml"));
    assert_eq!(cfg.paths.state, repo().join("var/state"));
    assert_eq!(cfg.amqp.prefetch, 256);
    assert_eq!(cfg.amqp.heartbeat, time::Duration::seconds(10));
    // The shipped policy is the default but for encryption, which it requires (issue 12), with the
    // hub's current and previous key (a rotation) and a certificate for every other party.
    assert_eq!(
        cfg.policy,
        PolicyConfig {
            require_encryption: true,
            ..PolicyConfig::default()
        }
    );
    assert_eq!(cfg.gateway.encryption_keys.len(), 2);
    assert!(register
        .parties()
        .iter()
        .all(|p| p.her_id == cfg.gateway.her_id || p.encryption_certificate.is_some()));
    assert!(register.contains(cfg.gateway.her_id));
    // The example register has what the brief asks for: a hospital with level-2 services, a
    // municipality with nursing home and home care, a GP office with a person party.
    // (The same parties as fixtures/messages/.)
    assert!(register.children(HerId(80000)).len() >= 2);
    assert!(register.accepts(HerId(81001), "INNLEGGELSESRAPPORT"));
    assert!(register.accepts(HerId(81002), "LOG_UTSKREVET"));
    assert_eq!(register.organisation_of(HerId(82001)), Some(HerId(82000)));
    assert!(register.amqp_user_allowed(HerId(80001), "guest"));
}

#[test]
fn every_key_of_the_shipped_gateway_file_is_documented() {
    let text = std::fs::read_to_string(repo().join("config/gateway.toml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        // Entries of a multi-line array (`encryption_keys`) and its closing bracket are documented
        // by the comment above the key.
        if t.is_empty()
            || t.starts_with('#')
            || t.starts_with('[')
            || t.starts_with('{')
            || t == "]"
        {
            continue;
        }
        assert!(
            i > 0 && lines[i - 1].trim().starts_with('#'),
            "key on line {} has no comment above it: {t}",
            i + 1
        );
    }
}

#[test]
fn defaults_and_resolution() {
    let (root, path) = tree(GOOD_GATEWAY, GOOD_PARTIES);
    let (cfg, register) = check(&path).unwrap();
    assert_eq!(cfg.base_dir, root.path());
    assert_eq!(cfg.amqp.prefetch, 256);
    assert_eq!(cfg.amqp.heartbeat, time::Duration::seconds(10));
    assert_eq!(cfg.paths.schemas, root.path().join("xsd"));
    assert_eq!(cfg.paths.state, root.path().join("var/state"));
    assert_eq!(cfg.policy.max_message_bytes, 36_700_160);
    assert_eq!(cfg.policy.apprec_timeout, time::Duration::hours(96));
    assert_eq!(cfg.policy.retention, time::Duration::days(30));
    assert!(cfg.policy.require_signature);
    assert!(cfg.policy.route_policy().reject_unknown_level2);
    assert_eq!(
        register.certificates(HerId(80101)),
        &[root.path().join("config/hospital-sign.pem")]
    );
    assert_eq!(GatewayConfig::load(&path).unwrap(), cfg);
}

#[test]
fn relative_paths_resolve_from_the_config_directorys_parent() {
    assert_eq!(
        base_dir(Path::new("/srv/hm/config/gateway.toml")),
        PathBuf::from("/srv/hm")
    );
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(base_dir(Path::new("config/gateway.toml")), cwd);
    assert_eq!(
        resolve(Path::new("/srv/hm"), Path::new("/etc/x.pem")),
        PathBuf::from("/etc/x.pem")
    );
}

#[test]
fn policy_values_are_read() {
    let gateway = format!(
        "{GOOD_GATEWAY}\n[policy]\nmax_message_bytes = 1000\napprec_timeout = \"48h\"\nretention = \"7d\"\nrequire_signature = false\nreject_unknown_level2 = false\n"
    );
    let (_root, path) = tree(&gateway, GOOD_PARTIES);
    let (cfg, _) = check(&path).unwrap();
    assert_eq!(
        cfg.policy,
        PolicyConfig {
            max_message_bytes: 1000,
            apprec_timeout: time::Duration::hours(48),
            retention: time::Duration::days(7),
            require_signature: false,
            require_encryption: false,
            reject_unknown_level2: false,
        }
    );
    assert!(!cfg.policy.route_policy().reject_unknown_level2);
}

#[test]
fn every_problem_is_reported_with_file_line_and_key() {
    let gateway = r#"[amqp]
url = "amqp://u:secret@h/%2f"
prefetch = "many"
heartbeet = "10s"

[gateway]
her_id = "abc"
signing_key = "config/missing-key.pem"
signing_cert = "config/parties.toml"

[paths]
register = "config/parties.toml"
trust_dir = "config/no-such-dir"
colour = "blue"

[policy]
apprec_timeout = "96x"

[extra]
a = 1
"#;
    let parties = r#"[[party]]
her_id = 1
name = "A"
accepts = ["APPREC", "NOPE"]
certificates = ["config/gateway-90000-key.pem", "config/none.pem"]
colour = 3

[[party]]
her_id = 1
name = "B"
organisation_her_id = 55
accepts = []

[[party]]
name = "C"
her_id = -4
"#;
    let (_root, path) = tree(gateway, parties);
    let problems = check(&path).unwrap_err();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let expect = [
        (3, "amqp.prefetch"),
        (4, "amqp.heartbeet"),
        (7, "gateway.her_id"),
        (8, "gateway.signing_key"),
        (9, "gateway.signing_cert"),
        (13, "paths.trust_dir"),
        (14, "paths.colour"),
        (17, "policy.apprec_timeout"),
        (19, "extra"),
        (4, "party[0].accepts"),
        (5, "party[0].certificates[0]"),
        (5, "party[0].certificates[1]"),
        (6, "party[0].colour"),
        (9, "party[1].her_id"),
        (11, "party[1].organisation_her_id"),
        (12, "party[1].accepts"),
        (16, "party[2].her_id"),
    ];
    let got = keys(&problems);
    for (line, key) in expect {
        assert!(
            got.contains(&(Some(line), key.to_string())),
            "missing {line}:{key} in\n{}",
            text.join("\n")
        );
    }
    assert_eq!(problems.len(), expect.len(), "{}", text.join("\n"));
    assert!(
        text.iter().all(|t| !t.contains("secret")),
        "the password never appears"
    );
    assert!(text
        .iter()
        .any(|t| t.contains("parties.toml:4: party[0].accepts") && t.contains("\"NOPE\"")));
    assert!(text
        .iter()
        .any(|t| t.contains("gateway.toml:17: policy.apprec_timeout: not a duration: \"96x\"")));
    assert!(matches!(
        problems
            .iter()
            .find(|p| p.key.as_deref() == Some("party[1].her_id"))
            .map(|p| &p.kind),
        Some(ProblemKind::Register(RegisterError::DuplicateHerId { .. }))
    ));
}

#[test]
fn url_and_url_env() {
    let var = "HELSEMELDING_TEST_AMQP_URL_CONFIG_TESTS";
    let with_env = GOOD_GATEWAY.replace(
        "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
        &format!("url_env = \"{var}\""),
    );
    let (_root, path) = tree(&with_env, GOOD_PARTIES);
    let problems = check(&path).unwrap_err();
    assert_eq!(keys(&problems), vec![(Some(3), "amqp.url_env".to_string())]);
    assert!(problems[0].to_string().contains(var));
    // SAFETY-free in edition 2021; the variable name is unique to this test.
    std::env::set_var(var, "amqp://svc:pw@broker:5671/prod");
    let (cfg, _) = check(&path).unwrap();
    assert_eq!(cfg.amqp.url, "amqp://svc:pw@broker:5671/prod");
    assert!(
        !format!("{:?}", cfg.amqp).contains("pw"),
        "Debug hides the password"
    );
    std::env::remove_var(var);

    let both = GOOD_GATEWAY.replace("[gateway]", &format!("url_env = \"{var}\"\n\n[gateway]"));
    let (_root, path) = tree(&both, GOOD_PARTIES);
    assert_eq!(
        keys(&check(&path).unwrap_err()),
        vec![(Some(3), "amqp.url".to_string())]
    );

    let neither = GOOD_GATEWAY.replace(
        "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
        "prefetch = 0",
    );
    let (_root, path) = tree(&neither, GOOD_PARTIES);
    let got = keys(&check(&path).unwrap_err());
    assert_eq!(
        got,
        vec![
            (Some(2), "amqp.url".to_string()),
            (Some(3), "amqp.prefetch".to_string())
        ]
    );

    let not_amqp = GOOD_GATEWAY.replace("amqp://guest:guest@", "http://guest:guest@");
    let (_root, path) = tree(&not_amqp, GOOD_PARTIES);
    assert_eq!(
        keys(&check(&path).unwrap_err()),
        vec![(Some(3), "amqp.url".to_string())]
    );
}

/// A broker cluster: `urls` instead of `url` (tried in that order), each checked; amqps:// needs
/// a readable CA file.
#[test]
fn urls_of_a_broker_cluster_and_tls_ca_file() {
    let cluster = GOOD_GATEWAY.replace(
        "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
        "urls = [\"amqps://svc:pw@a:5671/prod\", \"amqps://svc:pw@b:5671/prod\"]\ntls_ca_file = \"config/hospital-sign.pem\"",
    );
    let (root, path) = tree(&cluster, GOOD_PARTIES);
    let (cfg, _) = check(&path).unwrap();
    assert_eq!(cfg.amqp.url, "amqps://svc:pw@a:5671/prod");
    assert_eq!(cfg.amqp.fallback_urls, vec!["amqps://svc:pw@b:5671/prod"]);
    assert_eq!(
        cfg.amqp.tls_ca_file.as_deref(),
        Some(root.path().join("config/hospital-sign.pem").as_path())
    );
    // ":pw@": the temporary directory's random name (in tls_ca_file) may hold "pw" itself.
    assert!(
        !format!("{:?}", cfg.amqp).contains(":pw@"),
        "Debug hides every password"
    );

    let no_ca = cluster.replace("tls_ca_file = \"config/hospital-sign.pem\"", "");
    let (_root, path) = tree(&no_ca, GOOD_PARTIES);
    let problems = check(&path).unwrap_err();
    assert_eq!(
        keys(&problems),
        vec![(Some(3), "amqp.tls_ca_file".to_string())]
    );
    assert!(
        problems[0]
            .to_string()
            .contains("amqps://svc:***@a:5671/prod"),
        "{}",
        problems[0]
    );

    let bad_ca = cluster.replace("config/hospital-sign.pem", "config/parties.toml");
    let (_root, path) = tree(&bad_ca, GOOD_PARTIES);
    assert_eq!(
        keys(&check(&path).unwrap_err()),
        vec![(Some(4), "amqp.tls_ca_file".to_string())]
    );

    let bad_list = GOOD_GATEWAY.replace(
        "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
        "urls = [\"amqp://a:5672/%2f\", \"http://b\", \"amqp://a:5672/%2f\"]",
    );
    let (_root, path) = tree(&bad_list, GOOD_PARTIES);
    let problems = check(&path).unwrap_err();
    assert_eq!(
        keys(&problems),
        vec![
            (Some(3), "amqp.urls[1]".to_string()),
            (Some(3), "amqp.urls[2]".to_string())
        ]
    );
    assert!(
        problems[1].to_string().contains("listed twice"),
        "{}",
        problems[1]
    );

    let empty = GOOD_GATEWAY.replace(
        "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
        "urls = []",
    );
    let (_root, path) = tree(&empty, GOOD_PARTIES);
    assert_eq!(
        keys(&check(&path).unwrap_err()),
        vec![(Some(3), "amqp.urls".to_string())]
    );

    let both = GOOD_GATEWAY.replace("[gateway]", "urls = [\"amqp://b:5672/%2f\"]\n\n[gateway]");
    let (_root, path) = tree(&both, GOOD_PARTIES);
    assert_eq!(
        keys(&check(&path).unwrap_err()),
        vec![(Some(3), "amqp.url".to_string())]
    );
}

#[test]
fn missing_keys_and_sections() {
    let gateway = GOOD_GATEWAY.replace("her_id = 90000\n", "").replace(
        "[paths]\nregister = \"config/parties.toml\"\ntrust_dir = \"config/trust\"\n",
        "",
    );
    let (_root, path) = tree(&gateway, GOOD_PARTIES);
    let problems = check(&path).unwrap_err();
    let got = keys(&problems);
    assert!(
        got.contains(&(Some(5), "gateway.her_id".to_string())),
        "{got:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| matches!(&p.kind, ProblemKind::Missing(m) if m.contains("paths"))),
        "{got:?}"
    );
}

#[test]
fn the_gateway_must_be_in_the_register_and_the_register_not_empty() {
    let parties = GOOD_PARTIES.replace("her_id = 90000", "her_id = 90001");
    let (_root, path) = tree(GOOD_GATEWAY, &parties);
    let problems = check(&path).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].kind,
        ProblemKind::GatewayNotInRegister(HerId(90000))
    );
    assert_eq!(problems[0].line, Some(6));

    let (_root, path) = tree(GOOD_GATEWAY, "# nothing here\n");
    let problems = check(&path).unwrap_err();
    assert!(
        problems.iter().any(|p| p.key.as_deref() == Some("party")),
        "{problems:?}"
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let (_root, path) = tree(
        &GOOD_GATEWAY.replace("her_id = 90000", "her_id = "),
        GOOD_PARTIES,
    );
    let problems = check(&path).unwrap_err();
    assert!(
        matches!(problems[0].kind, ProblemKind::Syntax(_)),
        "{problems:?}"
    );
    assert_eq!(problems[0].line, Some(6));
    let (_root, path) = tree(GOOD_GATEWAY, "[[party]\nher_id = 1\n");
    let problems = check(&path).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| matches!(p.kind, ProblemKind::Syntax(_))
                && p.file.ends_with("parties.toml")
                && p.line == Some(1)),
        "{problems:?}"
    );
}

#[test]
fn missing_files_are_named() {
    let problems = check(Path::new("/nonexistent/config/gateway.toml")).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(problems[0]
        .to_string()
        .contains("/nonexistent/config/gateway.toml"));
    let (_root, path) = tree(
        &GOOD_GATEWAY.replace("config/parties.toml", "config/nope.toml"),
        GOOD_PARTIES,
    );
    let problems = check(&path).unwrap_err();
    assert_eq!(
        keys(&problems),
        vec![(Some(11), "paths.register".to_string())]
    );
    assert!(problems[0].to_string().contains("nope.toml"));
}

#[test]
fn an_inline_key_is_refused() {
    let gateway = GOOD_GATEWAY.replace(
        "\"config/gateway-90000-key.pem\"",
        "\"-----BEGIN PRIVATE KEY-----MIIE\"",
    );
    let (_root, path) = tree(&gateway, GOOD_PARTIES);
    let problems = check(&path).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| matches!(p.kind, ProblemKind::InlineSecret(_))),
        "{problems:?}"
    );
}

#[test]
fn extension_problems_print_like_the_others() {
    let p = ConfigProblem::new(
        "config/gateway.toml",
        Some(33),
        Some("paths.schemas"),
        ProblemKind::Schemas("MsgHead-v1_2.xsd not installed".into()),
    );
    assert_eq!(
        p.to_string(),
        "config/gateway.toml:33: paths.schemas: schemas: MsgHead-v1_2.xsd not installed"
    );
    let t = ConfigProblem::new(
        "config/trust",
        None,
        None,
        ProblemKind::TrustStore("no CA certificate".into()),
    );
    assert_eq!(
        t.to_string(),
        "config/trust: trust store: no CA certificate"
    );
}

#[test]
fn urls_are_redacted() {
    assert_eq!(
        redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
        "amqp://guest:***@127.0.0.1:5672/%2f"
    );
    assert_eq!(redact_url("amqps://user@host"), "amqps://user@host");
    assert_eq!(redact_url("amqp://host/vh"), "amqp://host/vh");
    assert_eq!(redact_url("not a url"), "not a url");
}

#[test]
fn the_in_flight_byte_budget_defaults_and_is_never_below_the_largest_message() {
    let (_root, path) = tree(GOOD_GATEWAY, GOOD_PARTIES);
    let (cfg, _) = check(&path).unwrap();
    assert_eq!(cfg.amqp.max_inflight_bytes, 64 << 20);

    let set = GOOD_GATEWAY.replace("[gateway]", "max_inflight_bytes = 134217728\n\n[gateway]");
    let (_root, path) = tree(&set, GOOD_PARTIES);
    assert_eq!(check(&path).unwrap().0.amqp.max_inflight_bytes, 128 << 20);

    // Below the default largest message (35 MiB): refused, naming both values.
    let small = GOOD_GATEWAY.replace("[gateway]", "max_inflight_bytes = 1048576\n\n[gateway]");
    let (_root, path) = tree(&small, GOOD_PARTIES);
    let problems = check(&path).unwrap_err();
    assert_eq!(
        keys(&problems),
        vec![(Some(5), "amqp.max_inflight_bytes".to_string())]
    );
    assert!(
        problems[0].to_string().contains("36700160"),
        "{}",
        problems[0]
    );

    // …and fine once the largest message is as small.
    let both = format!("{small}\n[policy]\nmax_message_bytes = 1048576\n");
    let (_root, path) = tree(&both, GOOD_PARTIES);
    assert!(check(&path).is_ok());
}

#[test]
fn revocation_defaults_values_and_problems() {
    let (_root, path) = tree(GOOD_GATEWAY, GOOD_PARTIES);
    let (cfg, _) = check(&path).unwrap();
    assert_eq!(cfg.revocation, super::RevocationConfig::default());
    let gateway = format!("{GOOD_GATEWAY}\n[revocation]\nfetch = false\nrefresh = \"2s\"\n");
    let (_root, path) = tree(&gateway, GOOD_PARTIES);
    let (cfg, _) = check(&path).unwrap();
    assert!(!cfg.revocation.fetch);
    assert_eq!(cfg.revocation.refresh, time::Duration::seconds(2));
    let gateway = format!(
        "{GOOD_GATEWAY}\n[revocation]\nretry_min = \"10ms\"\nretry_max = \"5ms\"\nwtach = \"1s\"\n"
    );
    let (_root, path) = tree(&gateway, GOOD_PARTIES);
    let problems = check(&path).unwrap_err();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(text.iter().any(|p| p.contains("wtach")), "{text:?}");
}

#[test]
fn the_hnmsg_exchange_is_optional_and_must_be_a_usable_name() {
    let (_root, path) = tree(GOOD_GATEWAY, GOOD_PARTIES);
    assert_eq!(check(&path).unwrap().0.amqp.hnmsg_exchange, None);

    let set = GOOD_GATEWAY.replace(
        "[gateway]",
        "hnmsg_exchange = \"NHNTestServiceBus\"\n\n[gateway]",
    );
    let (_root, path) = tree(&set, GOOD_PARTIES);
    assert_eq!(
        check(&path).unwrap().0.amqp.hnmsg_exchange.as_deref(),
        Some("NHNTestServiceBus")
    );

    for (bad, says) in [
        ("", "empty"),
        ("amq.direct", "reserved"),
        ("helsemelding", "own intake exchange"),
        ("a b", "letters, digits"),
    ] {
        let set = GOOD_GATEWAY.replace(
            "[gateway]",
            &format!("hnmsg_exchange = {bad:?}\n\n[gateway]"),
        );
        let (_root, path) = tree(&set, GOOD_PARTIES);
        let problems = check(&path).unwrap_err();
        assert_eq!(
            keys(&problems),
            vec![(Some(5), "amqp.hnmsg_exchange".to_string())],
            "{bad:?}"
        );
        assert!(
            problems[0].to_string().contains(says),
            "{bad:?}: {}",
            problems[0]
        );
    }
}

#[test]
fn insight_is_off_by_default_and_its_key_file_is_checked() {
    let (_root, path) = tree(GOOD_GATEWAY, GOOD_PARTIES);
    let (cfg, _) = check(&path).unwrap();
    assert_eq!(cfg.insight, super::InsightConfig::default());
    assert!(!cfg.insight.enabled);
    // Enabled without a key file.
    let gateway = format!("{GOOD_GATEWAY}\n[insight]\nenabled = true\n");
    let (_root, path) = tree(&gateway, GOOD_PARTIES);
    let problems = check(&path).unwrap_err();
    assert!(
        keys(&problems).iter().any(|(_, k)| k == "insight.key_file"),
        "{problems:?}"
    );
    // A key file others can read, then a good one.
    let gateway = format!(
        "{GOOD_GATEWAY}\n[insight]\nenabled = true\nkey_file = \"config/insight.key\"\nretention = \"40d\"\n"
    );
    let (root, path) = tree(&gateway, GOOD_PARTIES);
    let key = root.path().join("config/insight.key");
    std::fs::write(&key, format!("insight {}\n", "ab".repeat(32))).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text: Vec<String> = check(&path)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(text.iter().any(|p| p.contains("0600")), "{text:?}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (cfg, _) = check(&path).unwrap();
    assert!(cfg.insight.enabled);
    assert_eq!(cfg.insight.key_file.as_deref(), Some(key.as_path()));
    assert_eq!(cfg.insight.retention, time::Duration::days(40));
    // Unknown keys are errors, as everywhere.
    let gateway = format!("{GOOD_GATEWAY}\n[insight]\nenabeld = true\n");
    let (_root, path) = tree(&gateway, GOOD_PARTIES);
    let text: Vec<String> = check(&path)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(text.iter().any(|p| p.contains("enabeld")), "{text:?}");
}

#[test]
fn the_population_file_is_checked_and_resolved() {
    let gateway =
        format!("{GOOD_GATEWAY}\n[insight]\npopulation_file = \"config/population.csv\"\n");
    // Missing: said so, with the key.
    let (root, path) = tree(&gateway, GOOD_PARTIES);
    let problems = check(&path).unwrap_err();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        keys(&problems)
            .iter()
            .any(|(_, k)| k == "insight.population_file")
            && text.iter().any(|t| t.contains("cannot read")),
        "{text:?}"
    );
    // Every bad row is named.
    let file = root.path().join("config/population.csv");
    std::fs::write(
        &file,
        "kommunenummer,year,population\n5501,2026,many\n301,2026,700000\n",
    )
    .unwrap();
    let text: Vec<String> = check(&path)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        text.iter()
            .any(|t| t.contains("line 2: population \"many\""))
            && text
                .iter()
                .any(|t| t.contains("line 3: kommunenummer \"301\"")),
        "{text:?}"
    );
    // A good table: the path is resolved against the configuration's base.
    std::fs::write(
        &file,
        "kommunenummer,year,population\n5501,2026,80000\n0301,2026,717000\n",
    )
    .unwrap();
    let (cfg, _) = check(&path).unwrap();
    assert_eq!(cfg.insight.population_file.as_deref(), Some(file.as_path()));
    assert!(
        !cfg.insight.enabled,
        "a population table alone enables nothing"
    );
}

#[test]
fn store_url_env_reads_the_environment_and_tail_needs_no_secrets() {
    let store_var = "HELSEMELDING_TEST_STORE_URL_CONFIG_TESTS";
    let amqp_var = "HELSEMELDING_TEST_AMQP_URL_CONFIG_TESTS_PATHS";
    let with_env = GOOD_GATEWAY
        .replace(
            "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
            &format!("url_env = \"{amqp_var}\""),
        )
        .to_string()
        + &format!("\n[store]\nbackend = \"postgres\"\nurl_env = \"{store_var}\"\n");
    let (_root, path) = tree(&with_env, GOOD_PARTIES);
    // Neither variable set: each is named, at its own key.
    let problems = GatewayConfig::load(&path).unwrap_err();
    let mut got = keys(&problems);
    got.sort();
    assert_eq!(
        got,
        vec![
            (Some(3), "amqp.url_env".to_string()),
            (Some(16), "store.url_env".to_string())
        ],
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| p.to_string().contains(store_var)));
    // What tail and reload read needs neither.
    let paths = GatewayConfig::load_paths(&path).unwrap();
    assert_eq!(paths.state, _root.path().join("var/state"));
    assert_eq!(paths.routing_log, _root.path().join("var/routing.jsonl"));

    // SAFETY-free in edition 2021; the variable names are unique to this test.
    std::env::set_var(amqp_var, "amqp://svc:pw@broker:5671/prod");
    std::env::set_var(store_var, "postgres://hm:secret@db:5432/helsemelding");
    let cfg = GatewayConfig::load(&path).unwrap();
    assert_eq!(
        cfg.store,
        StoreBackend::Postgres {
            url: "postgres://hm:secret@db:5432/helsemelding".into()
        }
    );
    assert!(
        !format!("{:?} {}", cfg.store, cfg.store).contains("secret"),
        "Debug and Display hide the password"
    );
    // A value that is no PostgreSQL URL: said without printing it.
    std::env::set_var(store_var, "mysql://hm:secret@db/x");
    let problems = GatewayConfig::load(&path).unwrap_err();
    assert_eq!(
        keys(&problems),
        vec![(Some(16), "store.url_env".to_string())]
    );
    assert!(
        !problems[0].to_string().contains("secret"),
        "{}",
        problems[0]
    );
    std::env::remove_var(store_var);
    std::env::remove_var(amqp_var);

    // Exactly one of url and url_env; redb takes neither.
    let both = GOOD_GATEWAY.to_string()
        + &format!("\n[store]\nbackend = \"postgres\"\nurl = \"postgres://db/x\"\nurl_env = \"{store_var}\"\n");
    let (_root, path) = tree(&both, GOOD_PARTIES);
    let problems = GatewayConfig::load(&path).unwrap_err();
    assert_eq!(keys(&problems), vec![(Some(16), "store.url".to_string())]);
    assert!(problems[0].to_string().contains("exactly one"));
    let redb = GOOD_GATEWAY.to_string() + &format!("\n[store]\nurl_env = \"{store_var}\"\n");
    let (_root, path) = tree(&redb, GOOD_PARTIES);
    let problems = GatewayConfig::load(&path).unwrap_err();
    assert_eq!(
        keys(&problems),
        vec![(Some(15), "store.url_env".to_string())]
    );
    assert!(problems[0].to_string().contains("only for backend"));
}

#[test]
fn partitions_are_off_by_default_and_fit_the_budget_and_preferences() {
    let (_root, path) = tree(GOOD_GATEWAY, GOOD_PARTIES);
    let (cfg, _) = check(&path).unwrap();
    assert_eq!((cfg.amqp.partitions, cfg.amqp.prefer_partitions), (0, None));

    // Six partitions: the default budget grows to hold four largest messages (35 MiB) per intake
    // queue, which gives each partition's consumer a window of four.
    let six = GOOD_GATEWAY.replace(
        "[gateway]",
        "partitions = 6\nprefer_partitions = [0, 3, 6]\n\n[gateway]",
    );
    let (_root, path) = tree(&six, GOOD_PARTIES);
    let cfg = check(&path).unwrap().0;
    assert_eq!(cfg.amqp.partitions, 6);
    assert_eq!(cfg.amqp.prefer_partitions, Some(vec![0, 3, 6]));
    assert_eq!(cfg.amqp.max_inflight_bytes, 7 * 4 * (35 << 20));
    assert_eq!(
        crate::amqp::budget::partition_window(
            cfg.amqp.max_inflight_bytes,
            7,
            cfg.amqp.prefetch,
            cfg.policy.max_message_bytes
        ),
        4
    );

    // Set explicitly below that: refused, saying how much and why.
    let tight = GOOD_GATEWAY.replace(
        "[gateway]",
        "partitions = 6\nmax_inflight_bytes = 104857600\n\n[gateway]",
    );
    let (_root, path) = tree(&tight, GOOD_PARTIES);
    let problems = check(&path).unwrap_err();
    assert_eq!(
        keys(&problems),
        vec![(Some(6), "amqp.max_inflight_bytes".to_string())]
    );
    let text = problems[0].to_string();
    assert!(
        text.contains("256901120") && text.contains("7 intake queues"),
        "{text}"
    );

    // A preference for a partition that does not exist, or without partitions; too many partitions.
    for (bad, key, says) in [
        (
            "partitions = 2\nprefer_partitions = [1, 3]",
            "amqp.prefer_partitions",
            "partition 3 does not exist",
        ),
        (
            "prefer_partitions = [0]",
            "amqp.prefer_partitions",
            "needs partitions > 0",
        ),
        ("partitions = 65", "amqp.partitions", "at most 64"),
    ] {
        let text = GOOD_GATEWAY.replace("[gateway]", &format!("{bad}\n\n[gateway]"));
        let (_root, path) = tree(&text, GOOD_PARTIES);
        let problems = check(&path).unwrap_err();
        assert!(
            problems.iter().any(|p| p.to_string().contains(says)),
            "{bad}: {problems:#?}"
        );
        assert!(
            keys(&problems).iter().any(|(_, k)| k == key),
            "{bad}: {problems:#?}"
        );
    }
}
