//! Fuzz target: the AMQP 1.0 type-system decoder (`amqp::amqp10`) that reads the
//! `x-amqp-1.0-*` headers of Helsenorge.Messaging clients. Never a panic; and whatever decodes
//! re-encodes to something that decodes to the same value.
#![no_main]

use helsemelding::amqp::amqp10::{self, Properties10};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = amqp10::decode(data) {
        // Arrays of mixed element types cannot come out of the decoder, so encoding succeeds.
        let again = amqp10::encode(&v).expect("a decoded value encodes");
        assert_eq!(amqp10::decode(&again).expect("re-encoded value decodes"), v);
    }
    let _ = Properties10::decode(data);
    let _ = amqp10::decode_application_properties(data);
});
