//! jambonz `conference`: joins the call to the conference `name` (the host mixes it: each member hears
//! the others, never itself) until the call ends. `joinMuted` joins muted (heard by no one), `beep`
//! plays the joiner a short tone, `statusHook` gets `join` and `leave` events for this member (those of
//! `statusEvents` when given)
//! (`event`, `conference_sid` and `friendly_name`, which are the name, `time`, and the call's fields).
//!
//! Not built, refused with an error naming them rather than ignored (a caller meant to wait for a
//! moderator must not be put through): `startConferenceOnEnter: false`, `endConferenceOnExit: true`,
//! `maxParticipants`, `waitHook`.

use callwright_sdk::hooks::{self, Hook};
use callwright_sdk::media::{self, AudioSource, MediaUpdate, PlayOptions};
use callwright_sdk::serde_json::{Value, json};
use callwright_sdk::{Call, CallEvent, CallUpdate, Level, clock, log};

use crate::call_fields;

/// The beep a joiner hears: 800 Hz for 200 ms.
const BEEP: &str = "tone_stream://%(200,0,800)";

pub(crate) fn conference(call: &Call, args: &Value) -> Result<Value, String> {
    let name = args.get("name").and_then(Value::as_str).ok_or("name is required")?;
    for (setting, unsupported) in [("startConferenceOnEnter", json!(false)), ("endConferenceOnExit", json!(true))] {
        if args.get(setting) == Some(&unsupported) {
            return Err(format!("{setting}: {unsupported} is not built (members join at once and leave alone)"));
        }
    }
    for setting in ["maxParticipants", "waitHook"] {
        if args.get(setting).is_some() {
            return Err(format!("{setting} is not built"));
        }
    }
    let muted = args.get("joinMuted").and_then(Value::as_bool).unwrap_or(false);
    media::conference_join(call, name, muted).map_err(|error| error.message())?;
    // `statusEvents` lists the events wanted; without it, both.
    let wanted = crate::sources::strings(args.get("statusEvents"));
    let status_hook = args.get("statusHook").and_then(Hook::from_json);
    let report = |event: &str| {
        if wanted.is_empty() || wanted.iter().any(|w| w == event) {
            status(call, status_hook.as_ref(), name, event);
        }
    };
    report("join");
    if args.get("beep").and_then(Value::as_bool).unwrap_or(false) {
        let beep = [AudioSource::Stream(BEEP.into())];
        if let Err(error) = media::play(call, &beep, PlayOptions { loops: None, volume_db: None, barge_in: false }) {
            log(Level::Warn, &format!("conference: the beep cannot play: {}", error.message()));
        }
    }
    loop {
        match crate::next_media_update(call, None) {
            Some(MediaUpdate::Call(CallUpdate::Event(CallEvent::Ended(_)))) | None => break,
            Some(_) => {}
        }
    }
    report("leave");
    Ok(json!({"call_ended": true}))
}

/// Posts one event of this member to the status hook (queued and retried as status callbacks are).
fn status(call: &Call, hook: Option<&Hook>, name: &str, event: &str) {
    let Some(hook) = hook else { return };
    let mut payload = call_fields(call);
    payload.insert("event".into(), json!(event));
    payload.insert("conference_sid".into(), json!(name));
    payload.insert("friendly_name".into(), json!(name));
    payload.insert("time".into(), json!(clock::now_ms()));
    if let Err(error) = hooks::notify_json(hook, &Value::Object(payload)) {
        log(Level::Warn, &format!("conference: statusHook {}: {error}", hook.url));
    }
}
