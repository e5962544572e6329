//! A Rust call flow using a custom verb: it runs `lookup:refer` (uploaded separately, see the
//! `custom-verb` example) with the hooks from its config, and hangs up if the transfer did not happen.
//!
//! Config: `{"lookup_hook": "<url>", "action_hook": "<url>"}` (the action hook is optional).

use callwright_sdk::serde_json::json;
use callwright_sdk::{Call, Config, Flow, Level, dispatch, flow, log};

struct LookupFlow;

impl Flow for LookupFlow {
    fn handle(call: Call, config: Config) -> Result<(), String> {
        let lookup_hook = config.get_str("lookup_hook").ok_or("config needs lookup_hook")?;
        let mut args = json!({"lookupHook": lookup_hook});
        if let Some(action_hook) = config.get_str("action_hook") {
            args["actionHook"] = json!(action_hook);
        }
        let result = dispatch::run_verb(&call, "lookup:refer", &args).map_err(|e| e.message().to_string())?;
        log(Level::Info, &format!("lookup:refer gave {result}"));
        if result["final_referred_call_status"] != 200 {
            call.hangup().map_err(|e| format!("{e:?}"))?;
        }
        Ok(())
    }
}

flow!(LookupFlow);
