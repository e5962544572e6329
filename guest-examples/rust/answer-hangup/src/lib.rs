//! Answers the call, then waits for the caller to hang up or for `hangup_after_ms` (default 30 000), and
//! hangs up itself if the caller has not.

use callwright_sdk::{Call, CallEvent, Config, Flow, Level, flow, log};

struct AnswerHangup;

impl Flow for AnswerHangup {
    fn handle(call: Call, config: Config) -> Result<(), String> {
        let info = call.info();
        log(Level::Info, &format!("answering {} calling {}", info.from_user, info.to_user));
        call.answer(&[], None).map_err(|e| e.to_string())?;
        let wait = config.get_u64("hangup_after_ms").unwrap_or(30_000);
        loop {
            match call.next_event_until_end(wait) {
                Some(CallEvent::Ended(reason)) => {
                    log(Level::Info, &format!("caller hung up ({reason:?})"));
                    return Ok(());
                }
                // Requests inside the call (INFO, MESSAGE) are acknowledged and otherwise ignored.
                Some(CallEvent::Request(request)) => {
                    call.respond(request.id, 200, &[], None).map_err(|e| e.to_string())?;
                }
                // A transfer request (REFER) is left unanswered: the host declines it with 501.
                Some(CallEvent::Confirmed | CallEvent::Refer(_)) => {}
                None => {
                    log(Level::Info, "time is up: hanging up");
                    return call.hangup().map_err(|e| e.to_string());
                }
            }
        }
    }
}

flow!(AnswerHangup);
