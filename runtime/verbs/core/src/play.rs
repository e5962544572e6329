//! jambonz `play` (and SWML `play`, TwiML `<Play>`, which their runners hand it): plays `url` (one or a
//! list) `loop` times, stopped after `timeoutSecs`; the actionHook gets `reason: "playCompleted"` with
//! `playback_seconds`, `playback_milliseconds` and `playback_last_offset_pos` (samples at 8 kHz), or
//! `reason: "playFailed"` with `err` when a URL cannot be played. SWML's `volume` (dB), `say_language`,
//! `say_voice` (a built-in voice's name; others speak with the default) and `say_gender` apply too.

use callwright_sdk::media::{self, AudioSource, MediaUpdate, PlayOptions};
use callwright_sdk::serde_json::{Map, Value, json};
use callwright_sdk::{Call, CallEvent, CallUpdate, Level, log};

use crate::{report, sources};

/// How a playback ended, for the verbs that wait for one.
pub(crate) enum Played {
    /// It ended (completed, stopped or barged in), after this many ms heard.
    Ended(u32),
    /// The call ended first.
    CallEnded,
}

/// Plays `sources` and waits for the playback's end, the call's end, or `timeout_ms` (then it is stopped).
pub(crate) fn play_and_wait(
    call: &Call,
    sources: &[AudioSource],
    options: PlayOptions,
    timeout_ms: Option<u32>,
) -> Result<Played, String> {
    let playback = media::play(call, sources, options).map_err(|error| error.message())?;
    let started = callwright_sdk::clock::now_ms();
    loop {
        let left = timeout_ms.map(|limit| u64::from(limit).saturating_sub(callwright_sdk::clock::now_ms() - started));
        if left == Some(0) {
            playback.stop();
        }
        let wait_ms = left.filter(|ms| *ms > 0).map(|ms| ms.min(u64::from(u32::MAX)) as u32);
        match crate::next_media_update(call, wait_ms) {
            Some(MediaUpdate::PlaybackEnded(ended)) if ended.id == playback.id() => {
                return Ok(Played::Ended(ended.played_ms));
            }
            Some(MediaUpdate::Call(CallUpdate::Event(CallEvent::Ended(_)))) => return Ok(Played::CallEnded),
            _ => {}
        }
    }
}

pub(crate) fn play(call: &Call, args: &Value) -> Result<Value, String> {
    let urls = sources::strings(args.get("url").or_else(|| args.get("urls")));
    if urls.is_empty() {
        return Err("url is required (a string or a list)".into());
    }
    let mut voice = sources::voice(crate::synthesizer_of(args).as_ref());
    let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_string);
    voice.name = text("say_voice")
        .filter(|name| ["kal", "slt", "rms", "awb"].contains(&name.as_str()))
        .or(voice.name)
        .or_else(|| text("say_gender").and_then(|gender| sources::voice_for_gender(&gender)));
    voice.language = text("say_language").or(voice.language);
    let mut result = Map::new();
    let sources: Result<Vec<AudioSource>, String> = urls.iter().map(|url| sources::url(url, &voice)).collect();
    let options = PlayOptions {
        loops: sources::loops(args.get("loop")),
        volume_db: args.get("volume").and_then(Value::as_f64).map(|db| db.clamp(-40.0, 40.0) as f32),
        barge_in: false,
    };
    let timeout_ms = args.get("timeoutSecs").and_then(Value::as_f64).map(|s| (s * 1000.0).max(0.0) as u32);
    if args.get("seekOffset").is_some() {
        log(Level::Warn, "play: seekOffset is not supported; playing from the start");
    }
    match sources.and_then(|sources| play_and_wait(call, &sources, options, timeout_ms)) {
        Ok(Played::CallEnded) => return Ok(json!({"call_ended": true})),
        Ok(Played::Ended(played_ms)) => {
            result.insert("reason".into(), json!("playCompleted"));
            result.insert("playback_seconds".into(), json!(played_ms / 1000));
            result.insert("playback_milliseconds".into(), json!(played_ms));
            result.insert("playback_last_offset_pos".into(), json!(u64::from(played_ms) * 8));
        }
        Err(error) => {
            log(Level::Warn, &format!("play failed: {error}"));
            result.insert("reason".into(), json!("playFailed"));
            result.insert("err".into(), json!(error));
        }
    }
    Ok(report(call, args, "play", result))
}
