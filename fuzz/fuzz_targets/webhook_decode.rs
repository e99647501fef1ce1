//! Any bytes as a signed webhook body: parsing, NUL replacement and decoding never panic, and
//! what they produce keeps the decoder's promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waos_engine::meta::{self, Envelope};

fuzz_target!(|data: &[u8]| {
    let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    meta::make_storable(&mut body);
    // After it, no string (key or value) holds a NUL: Postgres could not store it.
    assert!(!holds_nul(&body));
    match meta::decode(&body) {
        Envelope::OtherObject { object } => assert_ne!(object, "whatsapp_business_account"),
        Envelope::WhatsApp(batch) => {
            // Decoding is a pure function of the body.
            let again = meta::decode(&body);
            assert!(matches!(again, Envelope::WhatsApp(ref b) if b.items.len() == batch.items.len()));
        }
    }
});

fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(key, item)| key.contains('\0') || holds_nul(item)),
        _ => false,
    }
}
