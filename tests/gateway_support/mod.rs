//! Only for tests/chaos.rs, which is moving to the `lab/` workspace member and was left as it
//! is: the gateway support lives in tests/support/gateway.rs. Delete this file when chaos.rs
//! has moved.
#[path = "../support/mod.rs"]
mod support;

pub use support::gateway::chaos_options;
