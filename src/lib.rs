//! helsemelding — a gateway for Norwegian health messages (KITH MsgHead 1.2 carrying Dialogmelding
//! and PLO, answered with AppRec) over RabbitMQ.
//!
//! Module map, in the order of the pipeline of `../shared/DESIGN.md` §2
//! (`gateway_inbound → decode → verify → validate → route → deliver → commit → ack`):
//!
//! | module     | job |
//! |------------|-----|
//! | `ids`      | `HerId`, `MsgId`, `Timestamp` shared by every stage |
//! | `codes`    | code lists 8221 (AppRec errors) and 8258 (AppRec status) |
//! | `msg_type` | code list 8279 (message functions), embedded |
//! | `address`  | a recipient's level-1/level-2 HER-ids and role: the routing key (HIS 1153) |
//! | `config`   | `gateway.toml` + `parties.toml`: strict parsing, `check` reports every problem; `scratch` copies for tests and the lab |
//! | `register` | the address register: parties, levels, accepted types, certificates, AMQP users |
//! | `amqp`     | RabbitMQ transport: topology, headers, confirmed publish, consume/ack, reconnect, redrive |
//! | `cms`      | **verify**: CMS SignedData signatures, certificate chains, CRLs; signing; EnvelopedData (decrypt, encrypt) |
//! | `xml`      | **decode**: the hardened XML reader (no DTD/entities, bounded depth and size, encodings), and the element tree the model reads through it |
//! | `schemas`  | the official XSD files pinned by `xsd/MANIFEST.toml`; install and verify them |
//! | `xsd`      | **validate**: official XSDs compiled at startup; streaming validation agreeing with libxml2 |
//! | `msghead`  | typed MsgHead 1.2 extraction: type, ids, full addresses, patient summary (no data), payload standard |
//! | `apprec`   | AppRec 1.0/1.1: parse, and build one that mirrors the original's addresses |
//! | `route`    | **route**: pure decisions per addressed recipient (deliver / E21 / T10 / not for us) |
//! | `store`    | **commit**: delivery state per message and recipient (redb), group commit, `status` |
//! | `revocation` | CRLs kept current: fetched from distribution points, dropped into `crls/`, swapped in between messages |
//! | `setup`    | load and check everything the configuration names (what `check-config` prints, what `serve` needs) |
//! | `gateway`  | the daemon: per-sender lanes, assessment (pure stages), decide (pure), effects in the order of DESIGN §3, routing log, metrics, `serve`/`replay`/`tail`; crash points (`crash`, real only with the `fault-injection` feature) — its own map in `gateway/mod.rs` |
//! | `console`  | the HTTP port: `/metrics`, `/health` and the read-only operator console (pages, credentials, redrive) |
//! | `inspect`  | `helsemelding inspect`: one operator line per MsgHead/AppRec file, no patient data |
//! | `insight`  | what the health community learns: observations after each commit (off the hot path), indicators I1–I12 with small-number suppression, `helsemelding report` and `/report` — its own map in `insight/mod.rs` |
//!
//! Not here: benchmarks (`bench`), the chaos rig (`chaos`) and the test-PKI generator (`dev-pki`)
//! are the workspace member `lab/` (package and binary `helsemelding-lab`), which uses this library
//! with the `fault-injection` feature; the operators' binary is built without it.
//!
//! Each module opens with its own `//!` saying its one job, its input and output, and how it fails.

pub mod address;
pub mod amqp;
pub mod apprec;
pub mod certs;
pub mod cms;
pub mod codes;
pub mod config;
pub mod console;
pub mod gateway;
pub mod ids;
pub mod insight;
pub mod inspect;
pub mod msg_type;
pub mod msghead;
pub mod register;
pub mod revocation;
pub mod route;
pub mod schemas;
pub mod setup;
pub mod store;
pub mod xml;
pub mod xsd;
