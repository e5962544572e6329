//! jambonz `dtmf` (and SWML `send_digits`, TwiML `<Play digits>`): sends `dtmf` (0-9, *, #, A-D; `w`
//! waits 500 ms, `W` a second) to the far end, each key held `duration` ms (default 500), as RFC 4733
//! events, or as SIP INFO when the far end offered no telephone-event; returns once all are sent.

use callwright_sdk::media::{self, MediaUpdate};
use callwright_sdk::serde_json::{Value, json};
use callwright_sdk::{Call, CallEvent, CallUpdate};

/// jambonz's default time each key is held.
const DEFAULT_DURATION_MS: u32 = 500;

pub(crate) fn dtmf(call: &Call, args: &Value) -> Result<Value, String> {
    let digits = args.get("dtmf").and_then(Value::as_str).unwrap_or_default();
    let duration = args.get("duration").and_then(Value::as_u64).map_or(DEFAULT_DURATION_MS, |ms| ms.min(5000) as u32);
    media::send_digits(call, digits, Some(duration)).map_err(|error| error.message())?;
    loop {
        match crate::next_media_update(call, None) {
            Some(MediaUpdate::DigitsSent) => return Ok(json!({})),
            Some(MediaUpdate::Call(CallUpdate::Event(CallEvent::Ended(_)))) | None => {
                return Ok(json!({"call_ended": true}));
            }
            Some(_) => {}
        }
    }
}
