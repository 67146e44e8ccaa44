//! helsemelding — a gateway for Norwegian health messages (KITH MsgHead 1.2 carrying Dialogmelding
//! and PLO, answered with AppRec) over RabbitMQ.
//!
//! Module map (the pipeline of `../shared/DESIGN.md` §2, in order):
//!
//! | module     | job |
//! |------------|-----|
//! | `ids`      | `HerId`, `MsgId`, `Timestamp` shared by every stage |
//! | `codes`    | code lists 8221 (AppRec errors) and 8258 (AppRec status) |
//! | `address`  | a recipient's level-1/level-2 HER-ids and role: the routing key (HIS 1153) |
//! | `msg_type` | code list 8279 (message functions), embedded |
//! | `config`   | `gateway.toml` + `parties.toml`: strict parsing, `check` reports every problem |
//! | `register` | the address register: parties, levels, accepted types, certificates, AMQP users |
//! | `route`    | pure routing decisions per addressed recipient (deliver / E21 / T10 / not for us) |
//! | `store`    | delivery state per message and recipient (redb), group commit, `status` |
//!
//! Each module opens with its own `//!` saying its one job, its input and output, and how it fails.

pub mod address;
pub mod codes;
pub mod config;
pub mod ids;
pub mod msg_type;
pub mod register;
pub mod route;
pub mod store;
