//! helsemelding — a gateway for Norwegian health messages (KITH MsgHead 1.2 carrying Dialogmelding
//! and PLO, answered with AppRec) over RabbitMQ.
//!
//! Module map (the pipeline of `../shared/DESIGN.md` §2, in order):
//!
//! | module     | job |
//! |------------|-----|
//! | `ids`      | `HerId`, `MsgId`, `Timestamp` shared by every stage |
//! | `codes`    | code lists 8221 (AppRec errors) and 8258 (AppRec status) |
//! | `gateway`  | the daemon: pipeline, effects in the order of DESIGN §3, routing log, metrics |
//! | `address`  | a recipient's level-1/level-2 HER-ids and role: the routing key (HIS 1153) |
//! | `msghead`  | typed MsgHead 1.2 extraction: type, ids, full addresses, patient summary (no data), payload standard |
//! | `apprec`   | AppRec 1.0/1.1: parse, and build one that mirrors the original's addresses |
//! | `inspect`  | `helsemelding inspect`: one operator line per MsgHead/AppRec file, no patient data |
//! | `schemas`  | the official XSD files pinned by `xsd/MANIFEST.toml`; install and verify them |
//! | `xml_tree` | (private) the model's one XML reader: namespace-resolved tree, no DTD, bounded depth |
//! | `msg_type` | code list 8279 (message functions), embedded |
//! | `config`   | `gateway.toml` + `parties.toml`: strict parsing, `check` reports every problem |
//! | `register` | the address register: parties, levels, accepted types, certificates, AMQP users |
//! | `route`    | pure routing decisions per addressed recipient (deliver / E21 / T10 / not for us) |
//! | `store`    | delivery state per message and recipient (redb), group commit, `status` |
//! | `amqp`     | RabbitMQ transport: topology, headers, confirmed publish, consume/ack, reconnect, redrive |
//! | `chaos`    | reliability proofs: the real gateway under kill -9, closed connections, full queues, broker restarts |
//! | `xml`      | the hardened XML reader (no DTD/entities, bounded depth and size, encodings) |
//! | `xsd`      | official XSDs compiled at startup; streaming validation agreeing with libxml2 |
//!
//! Each module opens with its own `//!` saying its one job, its input and output, and how it fails.

pub mod address;
pub mod amqp;
pub mod chaos;
pub mod codes;
pub mod gateway;
pub mod msghead;
pub mod apprec;
pub mod inspect;
pub mod schemas;
mod xml_tree;
pub mod config;
pub mod ids;
pub mod msg_type;
pub mod register;
pub mod route;
pub mod store;
pub mod cms;
pub mod xml;
pub mod xsd;
