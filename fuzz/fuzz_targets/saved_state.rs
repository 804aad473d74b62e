//! Saved history bytes (IndexedDB, an export the shopper kept): read, or refused with an error,
//! never a panic. What is read is valid, bounded, and survives a write and a read unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localrank::recommender::{read_saved_state, write_saved_state, MAX_HISTORY_EVENTS};

fuzz_target!(|data: &[u8]| {
    if let Ok((events, report)) = read_saved_state(data) {
        assert!(events.len() <= MAX_HISTORY_EVENTS);
        assert_eq!(report.events, events.len());
        for (index, event) in events.iter().enumerate() {
            if let Err(e) = event.validate(&format!("events[{index}]")) {
                panic!("read an invalid event: {e}");
            }
        }
        let (again, report) = read_saved_state(&write_saved_state(&events)).expect("own export");
        assert!(report.dropped.is_empty(), "{:?}", report.dropped);
        assert_eq!(again, events);
    }
});
