//! Test guest for the SIP interop tests. Chooses its behaviour from the To user:
//!
//! | user     | behaviour |
//! |----------|-----------|
//! | `busy`   | 486 Busy Here |
//! | `slow`   | 180 Ringing, answers after 5 s (time for a CANCEL) |
//! | `hangup` | answers, hangs up 1 s after the ACK |
//! | `transferee` | answers, accepts the caller's REFER (calls the target, NOTIFYs the caller), then waits for the caller's BYE and hangs up the new call 1 s later |
//! | `no-refer` | answers and ignores REFERs (the host declines them with 501), waits for the caller's BYE |
//! | other    | 180 Ringing, answers, waits up to 60 s for the caller's BYE |
//!
//! Requests inside the call get 200; REFERs get 603 unless the user says otherwise.

use callwright_sdk::{Call, CallEvent, Config, Flow, Level, clock, flow, log};

struct SipBehaviours;

fn wait_for_end(call: &Call, ms: u64) -> Result<(), String> {
    let deadline = clock::now_ms() + ms;
    while clock::now_ms() < deadline {
        match call.next_event(Some(500)) {
            Some(CallEvent::Ended(_)) => return Ok(()),
            Some(CallEvent::Request(request)) => call.respond(request.id, 200, &[], None).map_err(|e| e.to_string())?,
            Some(CallEvent::Refer(refer)) => call.respond(refer.id, 603, &[], None).map_err(|e| e.to_string())?,
            _ => {}
        }
    }
    call.hangup().map_err(|e| e.to_string())
}

/// Waits for a REFER and accepts it; once the new call is up, waits for the original caller's BYE, then
/// hangs the new call up a second later.
fn transferee(call: &Call) -> Result<(), String> {
    loop {
        match call.next_event(Some(30_000)) {
            Some(CallEvent::Refer(refer)) => {
                log(Level::Info, &format!("REFER to {} (referred by {:?})", refer.refer_to, refer.referred_by));
                let target = call.accept_refer(refer.id).map_err(|e| format!("transfer failed: {e}"))?;
                log(Level::Info, &format!("transfer target answered: {}", target.info().id));
                wait_for_end(call, 30_000)?;
                clock::sleep(1_000);
                return target.hangup().map_err(|e| e.to_string());
            }
            Some(CallEvent::Request(request)) => call.respond(request.id, 200, &[], None).map_err(|e| e.to_string())?,
            Some(CallEvent::Confirmed) => {}
            Some(CallEvent::Ended(_)) | None => return Ok(()),
        }
    }
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
                        Some(CallEvent::Refer(refer)) => {
                            call.respond(refer.id, 603, &[], None).map_err(|e| e.to_string())?
                        }
                    }
                }
                clock::sleep(1_000);
                call.hangup().map_err(|e| e.to_string())
            }
            "transferee" => {
                call.answer(&[], None).map_err(|e| e.to_string())?;
                transferee(&call)
            }
            "no-refer" => {
                call.answer(&[], None).map_err(|e| e.to_string())?;
                loop {
                    match call.next_event(Some(30_000)) {
                        Some(CallEvent::Ended(_)) | None => return Ok(()),
                        Some(CallEvent::Request(request)) => {
                            call.respond(request.id, 200, &[], None).map_err(|e| e.to_string())?
                        }
                        // Left unanswered on purpose: the host answers 501.
                        Some(CallEvent::Refer(_) | CallEvent::Confirmed) => {}
                    }
                }
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
