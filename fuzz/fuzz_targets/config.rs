//! Config loading, checked by its properties: any text is either a config or an error that
//! names the file (and, for a syntax error, the line and column); nothing panics. The seeds
//! are the shipped configs and the invalid fixtures (see the README's fuzzing section).
#![no_main]

use std::path::Path;

use gatehouse::config::{ConfigError, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("/fuzz/gatehouse.toml");
    match parse(text, file, Path::new("/fuzz")) {
        Ok(config) => {
            // A valid config has what every listener needs.
            assert!(!config.servers.is_empty());
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("/fuzz/gatehouse.toml: "), "{shown}");
            if let ConfigError::Syntax { .. } = e {
                assert!(shown.contains("line") && shown.contains("column"), "{shown}");
            }
        }
    }
});
