//! `record` (what TwiML `<Record>` and SWML `record` run): records the caller until a finish key, silence
//! after speech, no speech at all, `maxLength`, or the caller's hang-up, then returns the recording:
//! `recording_id`, `recording_url` (where the admin API serves it), `duration_ms`, `ended_by`
//! (`max-length`, `silence`, `no-input`, `key`, `hangup`) and the `digits` key that ended it.
//!
//! `maxLength` (seconds, default 3600), `timeout` (seconds of silence that end it, and of no speech at
//! the start; default 5, 0: none), `finishOnKey` (default every key), `playBeep` (default true),
//! `direction` (`received`, `sent`, `both`) and `stereo`.

use callwright_sdk::media::{self, MediaUpdate, RecordDirection, RecordOptions, RecordingEnd};
use callwright_sdk::serde_json::{Map, Value, json};
use callwright_sdk::{Call, CallEvent, CallUpdate, clock};

/// How long a recording may take to report its end once its call has (its file is finished by the media
/// task either way).
const AFTER_HANG_UP_MS: u64 = 2000;
/// The beep before a recording, which it does not hold.
const BEEP_MS: u64 = 400;

pub(crate) fn record(call: &Call, args: &Value) -> Result<Value, String> {
    let seconds = |key: &str, default: f64| args.get(key).and_then(Value::as_f64).unwrap_or(default).max(0.0);
    let max_ms = (seconds("maxLength", 3600.0) * 1000.0).min(3_600_000.0) as u32;
    let silence_ms = (seconds("timeout", 5.0) * 1000.0) as u32;
    let direction = match args.get("direction").and_then(Value::as_str) {
        Some("sent") => Some(RecordDirection::Sent),
        Some("both") => Some(RecordDirection::Both),
        _ => None,
    };
    let options = RecordOptions {
        direction,
        stereo: args.get("stereo").and_then(Value::as_bool).unwrap_or(false),
        max_ms: Some(max_ms.max(1000)),
        end_on_silence_ms: (silence_ms > 0).then_some(silence_ms),
        no_input_ms: (silence_ms > 0).then_some(silence_ms),
        finish_on_keys: Some(args.get("finishOnKey").and_then(Value::as_str).unwrap_or("1234567890*#").to_string()),
        beep: args.get("playBeep").and_then(Value::as_bool).unwrap_or(true),
    };
    let beep = options.beep;
    let recording = media::record(call, &options).map_err(|error| error.message())?;
    let started = clock::now_ms();
    let mut result = Map::new();
    result.insert("recording_id".into(), json!(recording.id()));
    result.insert("recording_url".into(), json!(recording.url()));
    let mut hung_up_at = None;
    loop {
        let timeout = hung_up_at.map(|at: u64| AFTER_HANG_UP_MS.saturating_sub(clock::now_ms() - at) as u32);
        if timeout == Some(0) {
            break;
        }
        match crate::next_media_update(call, timeout) {
            Some(MediaUpdate::RecordingEnded(ended)) if ended.id == recording.id() => {
                let (ended_by, key) = match ended.reason {
                    RecordingEnd::MaxLength => ("max-length", None),
                    RecordingEnd::Silence => ("silence", None),
                    RecordingEnd::NoInput => ("no-input", None),
                    RecordingEnd::Key(key) => ("key", Some(key)),
                    RecordingEnd::Stopped => ("hangup", None),
                };
                result.insert("duration_ms".into(), json!(ended.duration_ms));
                result.insert("ended_by".into(), json!(if hung_up_at.is_some() { "hangup" } else { ended_by }));
                if let Some(key) = key {
                    result.insert("digits".into(), json!(key));
                }
                break;
            }
            Some(MediaUpdate::Call(CallUpdate::Event(CallEvent::Ended(_)))) => {
                hung_up_at.get_or_insert_with(clock::now_ms);
                result.insert("call_ended".into(), json!(true));
            }
            None if hung_up_at.is_some() => break,
            _ => {}
        }
    }
    if let (Some(at), None) = (hung_up_at, result.get("duration_ms")) {
        // Its end was not reported before the call's: its length is the time to the hang-up.
        let beep = if beep { BEEP_MS } else { 0 };
        result.insert("duration_ms".into(), json!((at - started).saturating_sub(beep)));
        result.insert("ended_by".into(), json!("hangup"));
    }
    Ok(Value::Object(result))
}
