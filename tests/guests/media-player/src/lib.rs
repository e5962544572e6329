//! Test guest for the media interface. Answers, then plays what `play` lists (each an object with one
//! key: `say`, `url`, `file`, `silence`, `tones`, `ring` with `ms`, `stream`) with `loops`, `volume_db` and
//! `barge_in`; sends `send_digits` if given; records as `record` says (`max_ms`, `direction`, `stereo`,
//! `end_on_silence_ms`, `no_input_ms`, `finish_on_keys`, `beep`); then logs every update as
//! `media update: …` until the playback and the recording ended and the digits were sent (and `digits`
//! keys were pressed), or no update came for `idle_ms` (default 20 s), and hangs up `hangup_after_ms` later
//! (default 0).
//! A failure to play is logged as `play failed: …` and the call goes on. With `bridge_to` (a SIP URI) it
//! calls that target instead, bridges the two calls' media for `bridge_ms`, and hangs both up. With
//! `conference` (a name) it joins that conference first, muted with `muted` or when the call's To user
//! is in `muted_users`.

use callwright_sdk::media::{
    self, AudioSource, MediaUpdate, PlayOptions, RecordDirection, RecordOptions, Ringback, Speech,
};
use callwright_sdk::serde_json::Value;
use callwright_sdk::{Call, CallEvent, CallUpdate, Config, Flow, Level, clock, flow, log};

struct MediaPlayer;

fn source(value: &Value) -> Result<AudioSource, String> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let number = |key: &str| value.get(key).and_then(Value::as_u64).map(|n| n as u32);
    if let Some(say) = text("say") {
        let mut speech = Speech::text(&say);
        speech.voice.name = text("voice");
        return Ok(AudioSource::Say(speech));
    }
    if let Some(url) = text("url") {
        return Ok(AudioSource::Url(url));
    }
    if let Some(file) = text("file") {
        return Ok(AudioSource::File(file));
    }
    if let Some(ms) = number("silence") {
        return Ok(AudioSource::Silence(ms));
    }
    if let Some(keys) = text("tones") {
        return Ok(AudioSource::DtmfTones(keys));
    }
    if let Some(country) = text("ring") {
        return Ok(AudioSource::Ringback(Ringback { country, duration_ms: number("ms") }));
    }
    if let Some(address) = text("stream") {
        return Ok(AudioSource::Stream(address));
    }
    Err(format!("not a source: {value}"))
}

fn describe(update: &MediaUpdate) -> String {
    match update {
        MediaUpdate::Digit(digit) => format!("digit {} {} {}ms", digit.key, digit.source.name(), digit.duration_ms),
        MediaUpdate::PlaybackEnded(ended) => format!("playback {} after {}ms", ended.reason.name(), ended.played_ms),
        MediaUpdate::DigitsSent => "digits sent".into(),
        MediaUpdate::RecordingEnded(ended) => {
            format!("recording {} ended by {} after {}ms", ended.id, ended.reason.name(), ended.duration_ms)
        }
        MediaUpdate::Call(update) => format!("call {update:?}"),
    }
}

impl Flow for MediaPlayer {
    fn handle(call: Call, config: Config) -> Result<(), String> {
        call.answer(&[], None).map_err(|e| e.to_string())?;
        let value = &config.0;
        if let Some(target) = value.get("bridge_to").and_then(Value::as_str) {
            return bridge_to(&call, target, value);
        }
        if let Some(name) = value.get("conference").and_then(Value::as_str) {
            let to_user = call.info().to_user;
            let muted_users = value.get("muted_users").and_then(Value::as_array);
            let muted = value.get("muted").and_then(Value::as_bool).unwrap_or(false)
                || muted_users.is_some_and(|users| users.iter().any(|u| u.as_str() == Some(to_user.as_str())));
            match media::conference_join(&call, name, muted) {
                Ok(()) => log(Level::Info, &format!("joined conference {name}")),
                Err(error) => log(Level::Info, &format!("conference failed: {}", error.message())),
            }
        }
        let sources: Result<Vec<AudioSource>, String> = value
            .get("play")
            .and_then(Value::as_array)
            .map(|list| list.iter().map(source).collect())
            .unwrap_or(Ok(Vec::new()));
        let options = PlayOptions {
            loops: value.get("loops").and_then(Value::as_u64).map(|n| n as u32),
            volume_db: value.get("volume_db").and_then(Value::as_f64).map(|db| db as f32),
            barge_in: value.get("barge_in").and_then(Value::as_bool).unwrap_or(false),
        };
        let mut playing = false;
        match sources {
            Ok(sources) if !sources.is_empty() => match media::play(&call, &sources, options) {
                Ok(playback) => {
                    playing = true;
                    log(Level::Info, &format!("playing {}", playback.id()));
                }
                Err(error) => log(Level::Info, &format!("play failed: {}", error.message())),
            },
            Ok(_) => {}
            Err(error) => log(Level::Info, &format!("play failed: {error}")),
        }
        let mut sending = false;
        if let Some(digits) = value.get("send_digits").and_then(Value::as_str) {
            match media::send_digits(&call, digits, None) {
                Ok(()) => sending = true,
                Err(error) => log(Level::Info, &format!("send_digits failed: {}", error.message())),
            }
        }
        let mut recording = false;
        if let Some(options) = value.get("record") {
            let number = |key: &str| options.get(key).and_then(Value::as_u64).map(|n| n as u32);
            let direction = match options.get("direction").and_then(Value::as_str) {
                Some("sent") => Some(RecordDirection::Sent),
                Some("both") => Some(RecordDirection::Both),
                _ => None,
            };
            let record = RecordOptions {
                direction,
                stereo: options.get("stereo").and_then(Value::as_bool).unwrap_or(false),
                max_ms: number("max_ms"),
                end_on_silence_ms: number("end_on_silence_ms"),
                no_input_ms: number("no_input_ms"),
                finish_on_keys: options.get("finish_on_keys").and_then(Value::as_str).map(str::to_string),
                beep: options.get("beep").and_then(Value::as_bool).unwrap_or(false),
            };
            match media::record(&call, &record) {
                Ok(handle) => {
                    recording = true;
                    log(Level::Info, &format!("recording {}", handle.id()));
                }
                Err(error) => log(Level::Info, &format!("record failed: {}", error.message())),
            }
        }
        let mut keys_wanted = value.get("digits").and_then(Value::as_u64).unwrap_or(0);
        // How long it waits for the next update before it gives up and hangs up (default 20 s).
        let idle_ms = value.get("idle_ms").and_then(Value::as_u64).unwrap_or(20_000) as u32;
        while playing || sending || recording || keys_wanted > 0 {
            let Some((_, update)) = media::wait(&[&call], Some(idle_ms)) else { break };
            log(Level::Info, &format!("media update: {}", describe(&update)));
            match update {
                MediaUpdate::Call(CallUpdate::Event(CallEvent::Ended(_))) => return Ok(()),
                MediaUpdate::PlaybackEnded(_) => playing = false,
                MediaUpdate::DigitsSent => sending = false,
                MediaUpdate::RecordingEnded(_) => recording = false,
                MediaUpdate::Digit(_) => keys_wanted = keys_wanted.saturating_sub(1),
                _ => {}
            }
        }
        clock::sleep(value.get("hangup_after_ms").and_then(Value::as_u64).unwrap_or(0) as u32);
        call.hangup().map_err(|e| e.to_string())
    }
}

/// Calls `target` (the host's own offer), bridges the two calls' media for `bridge_ms` (default 3000),
/// then hangs up both.
fn bridge_to(call: &Call, target: &str, value: &Value) -> Result<(), String> {
    let callee = callwright_sdk::dial(&callwright_sdk::DialRequest::to(target)).map_err(|e| format!("{e:?}"))?;
    match media::bridge(call, &callee) {
        Ok(()) => log(Level::Info, "bridged"),
        Err(error) => log(Level::Info, &format!("bridge failed: {}", error.message())),
    }
    clock::sleep(value.get("bridge_ms").and_then(Value::as_u64).unwrap_or(3000) as u32);
    let _ = callee.hangup();
    call.hangup().map_err(|e| e.to_string())
}

flow!(MediaPlayer);
