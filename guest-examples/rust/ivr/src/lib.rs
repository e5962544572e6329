//! A small IVR driven by call events: after answering it waits for DTMF digits (SIP INFO with
//! `application/dtmf-relay` or `application/dtmf`) and acts on each:
//! `1` sends a MESSAGE back to the caller with the menu, `2` records a variable, `9` or `#` hangs up.
//! With no digit for `timeout_ms` (default 10 000) it hangs up. The digits pressed are kept in the call
//! variable `digits`.

use callwright_sdk::{Body, Call, CallEvent, Config, Flow, IncomingRequest, Level, flow, log, variables};

struct Ivr;

/// The digit in a DTMF INFO body: `Signal=5` (dtmf-relay) or a bare digit (application/dtmf).
fn digit_of(request: &IncomingRequest) -> Option<char> {
    let body = request.body.as_ref()?;
    let text = std::str::from_utf8(&body.data).ok()?;
    let signal =
        text.lines().find_map(|line| line.trim().strip_prefix("Signal=").map(str::trim)).unwrap_or(text.trim());
    signal.chars().next().filter(|c| c.is_ascii_digit() || *c == '*' || *c == '#')
}

impl Flow for Ivr {
    fn handle(call: Call, config: Config) -> Result<(), String> {
        call.answer(&[], None).map_err(|e| e.to_string())?;
        let timeout = config.get_u64("timeout_ms").unwrap_or(10_000);
        loop {
            let request = match call.next_event_until_end(timeout) {
                Some(CallEvent::Request(request)) => request,
                Some(CallEvent::Ended(_)) => return Ok(()),
                // A transfer request (REFER) is left unanswered: the host declines it with 501.
                Some(CallEvent::Confirmed | CallEvent::Refer(_)) => continue,
                None => {
                    log(Level::Info, "no digit in time: hanging up");
                    return call.hangup().map_err(|e| e.to_string());
                }
            };
            let digit = (request.method == "INFO").then(|| digit_of(&request)).flatten();
            let status = if request.method == "INFO" && digit.is_none() { 415 } else { 200 };
            call.respond(request.id, status, &[], None).map_err(|e| e.to_string())?;
            let Some(digit) = digit else { continue };
            let mut digits = variables::get("digits").unwrap_or_default();
            digits.push(digit);
            variables::set("digits", &digits);
            log(Level::Info, &format!("digit {digit} (so far {digits})"));
            match digit {
                '1' => {
                    let menu = Body::new("text/plain", "1: menu, 2: note, 9: goodbye");
                    let response = call.sip_request("MESSAGE", &[], Some(&menu)).map_err(|e| e.to_string())?;
                    log(Level::Info, &format!("menu MESSAGE answered {}", response.status));
                }
                '2' => variables::set("noted", "yes"),
                '9' | '#' => return call.hangup().map_err(|e| e.to_string()),
                _ => {}
            }
        }
    }
}

flow!(Ivr);
