//! Candidate lists, history lines and options as text from outside (a store's server, a file):
//! parsed, admitted leniently and validated strictly, never a panic. The lenient path's output
//! always passes the strict checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localrank::records::{
    admit_candidates, keep_newest, parse_history_lines, parse_json_record, split_json_array,
    validate_candidates, Candidate, Options,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(elements) = split_json_array(text, "candidates") {
        let parsed = elements
            .iter()
            .enumerate()
            .map(|(i, raw)| parse_json_record::<Candidate>(raw.get(), &format!("candidates[{i}]")))
            .collect();
        let admitted = admit_candidates(parsed, None);
        if let Err(e) = validate_candidates(&admitted.candidates) {
            panic!("the lenient path admitted what the strict one refuses: {e}");
        }
        for candidate in &admitted.candidates {
            let _ = candidate.embedding_text();
        }
    }
    if let Ok(mut events) = parse_history_lines(text, "history") {
        let before = events.len();
        keep_newest(&mut events, 3);
        assert_eq!(events.len(), before.min(3));
    }
    if let Ok(options) = serde_json::from_str::<Options>(text) {
        let _ = options.validate();
    }
});
