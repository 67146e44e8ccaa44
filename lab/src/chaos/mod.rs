//! Reliability proofs: the real gateway (`helsemelding-lab serve`: the operators' `serve` with
//! fault injection allowed), the real broker, and faults — `kill -9`, forced connection closes,
//! full recipient queues, broker restarts and alarms, a full state disk — while a stream of signed
//! messages flows. A run must end with every confirmed message on every queue it belongs to
//! (lost = 0), duplicates only as extra copies with the same MsgId, never a second, different
//! AppRec for one message and recipient (DESIGN §3; HIS 80415:2012 §3.2: an AppRec is final), and
//! no inversion: each sender's messages first arrive at each recipient in the order the sender
//! published them (DESIGN §3, order). The traffic mix gives every (sender, recipient) pair at least
//! one message in eight, so order can be judged on every pair of a run.
//!
//! | module     | job |
//! |------------|-----|
//! | `disk`     | a small tmpfs for the state directory, filled until ENOSPC and freed (disk-full) |
//! | `process`  | the gateway as a child process: spawn, `kill -9`, SIGTERM, restart |
//! | `traffic`  | a batch of signed messages with their expected outcomes; a confirmed sender that records its publish order |
//! | `ledger`   | drain the parties' queues; compare with the expectations: the figures |
//! | `cluster`  | the cluster scenarios: three instances on PostgreSQL, a 3-node broker cluster, `kill -9` of instances and a broker node stopped |
//! | `scenario` | the scenarios themselves, each in its own vhost and state directory |
//! | `cli`      | `helsemelding-lab chaos`: run scenarios, one TSV line each, exit 1 on loss |

pub mod cli;
pub mod cluster;
pub mod disk;
pub mod ledger;
pub mod process;
pub mod scenario;
pub mod traffic;
