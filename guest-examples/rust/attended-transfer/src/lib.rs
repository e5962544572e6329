//! Attended transfer (RFC 5589 §7): answers the caller, calls `target` (the consultation call), and once
//! the target has answered, refers the caller to it with `Replaces` naming the consultation call. The
//! caller's phone then calls the target with an INVITE that replaces our call to it, so caller and target
//! end up talking directly. The outcome goes to `action_hook` (jambonz-style fields, as in
//! `blind-transfer`, plus `consult_status`, and `replaced`: whether the target hung up the consultation
//! call, i.e. really swapped it for the caller's); both of our calls are hung up at the end.

use callwright_sdk::hooks::{self, Hook};
use callwright_sdk::serde_json::{Value, json};
use callwright_sdk::{
    Call, CallEvent, Config, DialError, DialRequest, EndReason, Flow, Level, ReferRequest, clock, dial, flow, log,
};

/// How long to wait for the caller's ACK before going on anyway.
const CONFIRM_WAIT_MS: u32 = 5_000;
/// After a successful transfer, how long the target may take to hang up the replaced consultation call.
const REPLACED_WAIT_MS: u64 = 5_000;

struct AttendedTransfer;

impl Flow for AttendedTransfer {
    fn handle(caller: Call, config: Config) -> Result<(), String> {
        let target = config.get_str("target").ok_or("the app config has no \"target\"")?.to_string();
        let action_hook = config.get("action_hook").and_then(Hook::from_json);
        caller.answer(&[], None).map_err(|e| e.to_string())?;
        if let Some(CallEvent::Ended(_)) = caller.next_event(Some(CONFIRM_WAIT_MS)) {
            return Ok(());
        }
        // The consultation call: in a real deployment an agent would talk to the target here.
        let consult = match dial(&DialRequest::to(&target)) {
            Ok(call) => call,
            Err(error) => {
                let status = match error {
                    DialError::Failed(status) => status,
                    DialError::Timeout => 408,
                    DialError::InvalidArgument(_) | DialError::Other(_) => 500,
                };
                log(Level::Warn, &format!("consultation call to {target} failed: {error:?}"));
                report(&action_hook, json!({ "consult_status": status, "transfer_outcome": "consult-failed" }));
                return caller.hangup().map_err(|e| e.to_string());
            }
        };
        clock::sleep(config.get_u64("consult_ms").unwrap_or(0).min(60_000) as u32);

        let mut request = ReferRequest::to("");
        request.replaces = Some(consult.info().id);
        let refer = caller.sip_refer(&request).map_err(|e| e.to_string())?;
        let transfer = refer.follow(|_| {});
        log(Level::Info, &format!("attended transfer to {target}: {:?}", transfer.outcome));
        // A target that honoured Replaces hangs up the consultation call itself: only then was the call
        // really replaced (a transferee that drops Replaces reaches the target on a second, new call).
        let replaced = transfer.succeeded()
            && matches!(
                consult.next_event_until_end(REPLACED_WAIT_MS),
                Some(CallEvent::Ended(EndReason::RemoteHangup))
            );
        let info = caller.info();
        let mut payload = json!({
            "call_sid": info.id,
            "call_id": info.sip_call_id,
            "direction": "inbound",
            "from": info.from_user,
            "to": info.to_user,
            "consult_status": 200,
            "transfer_outcome": transfer.outcome_name(),
            "replaced": replaced,
        });
        for (key, value) in transfer.jambonz_action_fields() {
            payload[key] = value;
        }
        report(&action_hook, payload);
        let _ = consult.hangup();
        caller.hangup().map_err(|e| e.to_string())
    }
}

/// Queues the result for the action hook, if there is one.
fn report(hook: &Option<Hook>, payload: Value) {
    if let Some(hook) = hook
        && let Err(error) = hooks::notify_json(hook, &payload)
    {
        log(Level::Warn, &format!("hook {} not sent: {error}", hook.url));
    }
}

flow!(AttendedTransfer);
