//! Any header and body: the signature check never panics, and accepts exactly the signature
//! made over the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waos_engine::crypto::{webhook_signature, webhook_signature_valid};

const SECRET: &[u8] = b"fuzz-app-secret";

fuzz_target!(|data: &[u8]| {
    // The first line is the header, the rest the body.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (header, body) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let header = String::from_utf8_lossy(header);
    let signed = webhook_signature(SECRET, body).expect("a fixed key is usable");
    assert!(webhook_signature_valid(SECRET, &signed, body));
    let valid = webhook_signature_valid(SECRET, &header, body);
    if valid {
        // Only the right digest passes (in either case of hex).
        assert_eq!(header.trim().to_lowercase(), signed);
    }
});
