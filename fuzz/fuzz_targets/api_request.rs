//! `invar watch`'s request decoding: arbitrary bytes as the JSON body of `POST /api/v1/runs`
//! and as the query string of every list route. Errors are 4xx answers; a panic is a 5xx.
#![no_main]
use libfuzzer_sys::fuzz_target;

// The routes' own types and decoding, compiled here without the rest of invar-watch.
#[path = "../../crates/invar-watch/src/request.rs"]
#[allow(dead_code)]
mod request;

fuzz_target!(|data: &[u8]| {
    let (query, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let query = String::from_utf8_lossy(query);
    let _ = request::decode_request(&query, body);
});
