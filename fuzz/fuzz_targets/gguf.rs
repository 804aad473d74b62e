//! Model file bytes (what a browser downloads) through the GGUF reader and every check on the
//! metadata and tensors: an error or a model, never a panic, a hang or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localrank::model::gguf::ModelFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = ModelFile::from_bytes(data) {
        // What loaded is consistent with itself: every tensor the config implies is there.
        for (name, shape) in localrank::model::gguf::expected_tensors(&file.config) {
            let tensor = &file.tensors[&name];
            assert_eq!(tensor.shape().dims(), shape.as_slice(), "{name}");
        }
    }
});
