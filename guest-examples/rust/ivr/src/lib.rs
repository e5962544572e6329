//! A small IVR: after answering it greets the caller (speech, which a key press interrupts) and acts on
//! each key, however it was sent (RFC 4733 events, SIP INFO, or tones in the audio): `1` speaks the menu
//! and also sends it as a MESSAGE in the dialog, `2` records a variable, `9` or `#` hangs up. With no key for `timeout_ms` (default 10 000) it hangs up. The keys pressed are kept in the call
//! variable `digits`.

use callwright_sdk::media::{self, AudioSource, MediaUpdate, PlayOptions, Speech};
use callwright_sdk::{Body, Call, CallEvent, CallUpdate, Config, Flow, Level, flow, log, variables};

struct Ivr;

const GREETING: &str = "Welcome to callwright. Press 1 for the menu, 2 to leave a note, or 9 to hang up.";
const MENU: &str = "1, this menu. 2, a note. 9, goodbye.";

/// Speaks `text`, stopped by the caller's next key; a failure is logged and the call goes on.
fn speak(call: &Call, text: &str) {
    if let Err(error) = media::play(call, &[AudioSource::Say(Speech::text(text))], PlayOptions::barge_in()) {
        log(Level::Warn, &format!("cannot speak: {}", error.message()));
    }
}

impl Flow for Ivr {
    fn handle(call: Call, config: Config) -> Result<(), String> {
        call.answer(&[], None).map_err(|e| e.to_string())?;
        let timeout = config.get_u64("timeout_ms").unwrap_or(10_000) as u32;
        speak(&call, config.get_str("greeting").unwrap_or(GREETING));
        loop {
            let digit = match media::wait(&[&call], Some(timeout)) {
                Some((_, MediaUpdate::Digit(digit))) => digit,
                Some((_, MediaUpdate::Call(CallUpdate::Event(CallEvent::Ended(_))))) => return Ok(()),
                Some((_, MediaUpdate::Call(CallUpdate::Event(CallEvent::Request(request))))) => {
                    // Not a digit (those the host answers itself): nothing this IVR handles.
                    call.respond(request.id, 405, &[], None).map_err(|e| e.to_string())?;
                    continue;
                }
                // A transfer request (REFER) is left unanswered: the host declines it with 501.
                Some(_) => continue,
                None => {
                    log(Level::Info, "no digit in time: hanging up");
                    return call.hangup().map_err(|e| e.to_string());
                }
            };
            let mut digits = variables::get("digits").unwrap_or_default();
            digits.push_str(&digit.key);
            variables::set("digits", &digits);
            log(Level::Info, &format!("digit {} from {} (so far {digits})", digit.key, digit.source.name()));
            match digit.key.as_str() {
                "1" => {
                    speak(&call, MENU);
                    let menu = Body::new("text/plain", "1: menu, 2: note, 9: goodbye");
                    let response = call.sip_request("MESSAGE", &[], Some(&menu)).map_err(|e| e.to_string())?;
                    log(Level::Info, &format!("menu MESSAGE answered {}", response.status));
                }
                "2" => variables::set("noted", "yes"),
                "9" | "#" => return call.hangup().map_err(|e| e.to_string()),
                _ => {}
            }
        }
    }
}

flow!(Ivr);
