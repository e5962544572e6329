//! Test guest for the SIP interop tests. Chooses its behaviour from the To user:
//!
//! | user     | behaviour |
//! |----------|-----------|
//! | `busy`   | 486 Busy Here |
//! | `slow`   | 180 Ringing, answers after 5 s (time for a CANCEL) |
//! | `hangup` | answers, hangs up 1 s after the ACK |
//! | other    | 180 Ringing, answers, waits up to 60 s for the caller's BYE |
//!
//! Requests inside the call get 200.

use callwright_sdk::{Call, CallEvent, Config, Flow, clock, flow};

struct SipBehaviours;

fn wait_for_end(call: &Call, ms: u64) -> Result<(), String> {
    let deadline = clock::now_ms() + ms;
    while clock::now_ms() < deadline {
        match call.next_event(Some(500)) {
            Some(CallEvent::Ended(_)) => return Ok(()),
            Some(CallEvent::Request(request)) => call.respond(request.id, 200, &[], None).map_err(|e| e.to_string())?,
            _ => {}
        }
    }
    call.hangup().map_err(|e| e.to_string())
}

impl Flow for SipBehaviours {
    fn handle(call: Call, _config: Config) -> Result<(), String> {
        let user = call.info().to_user;
        match user.as_str() {
            "busy" => call.reject(486, None, &[]).map_err(|e| e.to_string()),
            "slow" => {
                call.ring(180, &[], None).map_err(|e| e.to_string())?;
                // A CANCEL ends the call while we sleep; answering then fails, which is expected.
                clock::sleep(5_000);
                match call.answer(&[], None) {
                    Ok(()) => wait_for_end(&call, 60_000),
                    Err(_) => Ok(()),
                }
            }
            "hangup" => {
                call.answer(&[], None).map_err(|e| e.to_string())?;
                loop {
                    match call.next_event(Some(10_000)) {
                        Some(CallEvent::Confirmed) => break,
                        Some(CallEvent::Ended(_)) | None => return Ok(()),
                        Some(CallEvent::Request(request)) => {
                            call.respond(request.id, 200, &[], None).map_err(|e| e.to_string())?
                        }
                    }
                }
                clock::sleep(1_000);
                call.hangup().map_err(|e| e.to_string())
            }
            _ => {
                call.ring(180, &[], None).map_err(|e| e.to_string())?;
                call.answer(&[], None).map_err(|e| e.to_string())?;
                wait_for_end(&call, 60_000)
            }
        }
    }
}

flow!(SipBehaviours);
