//! The gateway daemon (`helsemelding serve`): the pipeline of DESIGN §2 over RabbitMQ.
//!
//! | module        | job |
//! |---------------|-----|
//! | `server`      | lifecycle: start (store, broker supervisor, workers, HTTP, housekeeping), graceful shutdown |
//! | `lanes`       | consume the intake; one lane per sender keeps its messages in order; retries in place |
//! | `assess`      | pure stages decode → verify → validate → route, from plain inputs to a `Plan` |
//! | `decide`      | pure: a plan and the stored record → everything to publish, record and log (signs AppRecs) |
//! | `deliver`     | effects in DESIGN §3 order: record, publish with confirms, commit, ack; refusals and requeues |
//! | `keylock`     | one (sender, MsgId) at a time across lanes |
//! | `workers`     | the fixed pool of threads for CPU work |
//! | `routing_log` | one JSON line per decision, `tail` |
//! | `metrics`     | `/metrics`, `/health` |
//! | `reload`      | SIGHUP: re-read and check the configuration, register and trust directory; swap them in between messages |
//! | `pidfile`     | `<state>/helsemelding.pid`: one gateway per state directory; how `helsemelding reload` finds it |
//! | `crash`       | fault injection for the chaos rig |
//! | `fast_clock`  | a clock faster than the wall clock for the soak (same gate as `crash`) |
//! | `cli`         | `serve`, `reload`, `replay`, `tail` |

pub mod assess;
pub mod cli;
pub mod crash;
pub mod decide;
mod deliver;
pub mod fast_clock;
mod keylock;
mod lanes;
pub mod metrics;
pub mod pidfile;
pub mod reload;
pub mod routing_log;
pub mod server;
pub mod tail;
pub mod workers;

pub use lanes::envelope_of;
