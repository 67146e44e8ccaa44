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
//! | `xml`      | the hardened XML reader (no DTD/entities, bounded depth and size, encodings) |
//! | `xsd`      | official XSDs compiled at startup; streaming validation agreeing with libxml2 |
//!
//! Each module opens with its own `//!` saying its one job, its input and output, and how it fails.

pub mod address;
pub mod codes;
pub mod ids;
pub mod xml;
pub mod xsd;
