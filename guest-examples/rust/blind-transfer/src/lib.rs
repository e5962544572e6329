//! Answers, then transfers the caller with SIP REFER (a blind transfer) to the app's `target`, reporting
//! progress the way jambonz's `sip:refer` does: each NOTIFY to `event_hook` as
//! `{"event": "transfer-status", "call_status": "180"}`, and the result to `action_hook` with
//! `refer_status` and `final_referred_call_status` beside the call's fields. When a transfer fails, the
//! next of `fallback_targets` is tried. The call is hung up at the end.

use callwright_sdk::hooks::{self, Hook};
use callwright_sdk::serde_json::{Value, json};
use callwright_sdk::transfer::{ReferReport, jambonz_call_fields};
use callwright_sdk::{
    Call, CallEvent, CallInfo, Config, Credentials, Flow, Header, Level, ReferOutcome, ReferRequest, flow, log,
};

/// How long to wait for the caller's ACK before transferring anyway.
const CONFIRM_WAIT_MS: u64 = 5_000;

struct BlindTransfer;

impl Flow for BlindTransfer {
    fn handle(call: Call, config: Config) -> Result<(), String> {
        let first = config.get_str("target").ok_or("the app config has no \"target\"")?.to_string();
        let fallbacks = config.get("fallback_targets").and_then(Value::as_array).cloned().unwrap_or_default();
        let targets = std::iter::once(first).chain(fallbacks.iter().filter_map(|t| t.as_str().map(str::to_string)));
        call.answer(&[], None).map_err(|e| e.to_string())?;
        if let Some(CallEvent::Ended(_)) = wait_for_ack(&call) {
            return Ok(());
        }
        let action_hook = config.get("action_hook").and_then(Hook::from_json);
        let event_hook = config.get("event_hook").and_then(Hook::from_json);
        let info = call.info();
        for target in targets {
            let refer = call.sip_refer(&refer_request(&target, &config)).map_err(|e| e.to_string())?;
            let transfer = refer.follow(|status| {
                if let Some(hook) = &event_hook {
                    report(hook, &json!({ "event": "transfer-status", "call_status": status.to_string() }));
                }
            });
            log(Level::Info, &format!("transfer to {target}: {:?}", transfer.outcome));
            if let Some(hook) = &action_hook {
                report(hook, &action_payload(&info, &transfer));
            }
            match transfer.outcome {
                ReferOutcome::Failed(_) => continue,
                ReferOutcome::CallEnded => return Ok(()),
                _ => break,
            }
        }
        call.hangup().map_err(|e| e.to_string())
    }
}

/// Waits until the caller acknowledged the answer (or a few seconds passed); returns the event that ended
/// the wait.
fn wait_for_ack(call: &Call) -> Option<CallEvent> {
    loop {
        match call.next_event(Some(CONFIRM_WAIT_MS as u32)) {
            Some(CallEvent::Request(request)) => {
                let _ = call.respond(request.id, 200, &[], None);
            }
            Some(CallEvent::Refer(refer)) => {
                let _ = call.respond(refer.id, 603, &[], None);
            }
            other => return other,
        }
    }
}

/// The REFER for `target` with the config's options.
fn refer_request(target: &str, config: &Config) -> ReferRequest {
    let mut request = ReferRequest::to(target);
    request.referred_by = config.get_str("referred_by").map(str::to_string);
    request.no_refer_sub = config.get("no_refer_sub").and_then(Value::as_bool).unwrap_or(false);
    request.timeout_ms = config.get_u64("timeout_ms").map(|ms| ms.min(u32::MAX as u64) as u32);
    if let (Some(username), Some(password)) = (config.get_str("username"), config.get_str("password")) {
        request.credentials = Some(Credentials { username: username.into(), password: password.into() });
    }
    if let Some(Value::Object(headers)) = config.get("headers") {
        request.headers = headers.iter().filter_map(|(name, value)| Some(Header::new(name, value.as_str()?))).collect();
    }
    request
}

/// The action hook's payload: jambonz's snake_case call fields and refer results, plus our outcome name.
fn action_payload(info: &CallInfo, transfer: &ReferReport) -> Value {
    let mut payload = jambonz_call_fields(info, "in-progress");
    payload.extend(transfer.jambonz_action_fields());
    payload.insert("transfer_outcome".into(), json!(transfer.outcome_name()));
    Value::Object(payload)
}

/// Queues a status callback; a refused hook is logged, not fatal.
fn report(hook: &Hook, payload: &Value) {
    if let Err(error) = hooks::notify_json(hook, payload) {
        log(Level::Warn, &format!("hook {} not sent: {error}", hook.url));
    }
}

flow!(BlindTransfer);
