//! Fuzz target: the model's extraction — `MsgHead::parse` (and what it derives: recipients,
//! payload standard) and `AppRec::parse`.
#![no_main]

use helsemelding::apprec::AppRec;
use helsemelding::msghead::MsgHead;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(head) = MsgHead::parse(data) {
        let _ = head.recipients();
        let _ = head.sender_address().communication_party();
    }
    if let Ok(rec) = AppRec::parse(data) {
        let _ = rec.status();
        let _ = rec.sender.address().communication_party();
        let _ = rec.receiver.address().communication_party();
        for e in &rec.errors {
            let _ = e.code();
        }
    }
});
