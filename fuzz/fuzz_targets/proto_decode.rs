//! The protocol decoder on arbitrary messages: the first 8 bytes are the
//! label, the rest the message registers. A request that decodes must
//! validate and re-encode to exactly the same message; a reply decoder must
//! never panic, for every operation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tagloan_proto::{Op, Request, Response, MAX_MESSAGE_WORDS};

fuzz_target!(|data: &[u8]| {
    let Some((label, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let label = u64::from_le_bytes(*label);
    let words: Vec<u64> = rest
        .chunks(8)
        .take(MAX_MESSAGE_WORDS + 2)
        .map(|chunk| {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            u64::from_le_bytes(word)
        })
        .collect();
    if let Ok(request) = Request::decode(label, &words) {
        assert_eq!(request.validate(), Ok(()), "{request:?}");
        let mut out = [0u64; MAX_MESSAGE_WORDS];
        let (encoded_label, count) = request.encode_unchecked(&mut out);
        assert_eq!(
            (encoded_label, &out[..count]),
            (label, &words[..]),
            "{request:?}"
        );
    }
    for op in Op::ALL {
        let _ = Response::decode(*op, label, &words);
    }
});
