//! Test guest importing `callwright-test:absent/lookup`, which the host does not provide and stubs. It
//! answers, then with config `{"use_absent": true}` calls the import (which traps); otherwise it hangs up
//! after `hangup_after_ms`.

use callwright_sdk::{Call, Config, Flow, Level, flow, log};

wit_bindgen::generate!({ path: "wit", world: "absent" });

struct StubbedImport;

impl Flow for StubbedImport {
    fn handle(call: Call, config: Config) -> Result<(), String> {
        call.answer(&[], None).map_err(|e| e.to_string())?;
        if config.get("use_absent").and_then(|v| v.as_bool()).unwrap_or(false) {
            let version = callwright_test::absent::lookup::version();
            log(Level::Info, &format!("the absent interface answered {version}"));
        }
        call.next_event_until_end(config.get_u64("hangup_after_ms").unwrap_or(500));
        call.hangup().map_err(|e| e.to_string())
    }
}

flow!(StubbedImport);
