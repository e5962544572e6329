//! jambonz `gather` of digits: plays its nested `say` or `play` as a prompt and collects keys, however
//! they came (RFC 4733, SIP INFO, in-band tones: the host reports each press once).
//!
//! It ends on `finishOnKey` (not included in `digits`), on `numDigits` (or `maxDigits`) keys, or on a
//! timer. The timers do what jambonz's documentation says, including where jambonz itself does not
//! (its issues 597, 913 and 1306): `timeout` (default 15 s, 0: none) counts only while nothing has been
//! typed, starting when the prompt ends (a key during the prompt stops it with `dtmfBargein`, the
//! default, and counts with `listenDuringPrompt`, also the default); once a key is typed,
//! `interDigitTimeout` (default: `timeout`) governs alone, so a caller still typing is never cut off,
//! and when it passes with at least `minDigits` (default 1) keys the gather succeeds. The actionHook gets
//! `reason: "dtmfDetected"` with `digits`, or `reason: "timeout"` (with what was typed, if anything).
//! Speech input is not built: a gather asking for speech alone ends with `reason: "error"`.

use callwright_sdk::media::{self, AudioSource, MediaUpdate, PlayOptions};
use callwright_sdk::serde_json::{Map, Value, json};
use callwright_sdk::{Call, CallEvent, CallUpdate, Level, clock, log};

use crate::{report, sources};

/// jambonz's default `timeout`, in seconds.
const DEFAULT_TIMEOUT_SECONDS: f64 = 15.0;

pub(crate) fn gather(call: &Call, args: &Value) -> Result<Value, String> {
    let input = sources::strings(args.get("input"));
    let wants_digits = input.is_empty() || input.iter().any(|i| i == "digits");
    let mut result = Map::new();
    if !wants_digits {
        log(Level::Warn, "gather: speech recognition is not built; a speech-only gather ends in error");
        result.insert("reason".into(), json!("error"));
        result.insert("details".into(), json!("speech recognition is not available on this server"));
        return Ok(report(call, args, "gather", result));
    }
    if input.iter().any(|i| i == "speech") {
        log(Level::Warn, "gather: speech recognition is not built; collecting digits only");
    }
    let seconds = |key: &str| args.get(key).and_then(Value::as_f64).filter(|s| s.is_finite() && *s >= 0.0);
    let count = |key: &str| args.get(key).and_then(Value::as_u64).map(|n| n as usize);
    let timeout_ms = (seconds("timeout").unwrap_or(DEFAULT_TIMEOUT_SECONDS) * 1000.0) as u64;
    let inter_digit_ms = seconds("interDigitTimeout").map_or(timeout_ms, |s| (s * 1000.0) as u64);
    let num_digits = count("numDigits");
    let max_digits = num_digits.or(count("maxDigits"));
    let min_digits = count("minDigits").unwrap_or(1).max(1);
    let finish_keys = args.get("finishOnKey").and_then(Value::as_str).unwrap_or("").to_ascii_uppercase();
    let barge_in = args.get("dtmfBargein").and_then(Value::as_bool).unwrap_or(true);
    let listen_during_prompt = args.get("listenDuringPrompt").and_then(Value::as_bool).unwrap_or(true);

    let prompt = prompt_sources(args)?;
    let playback = if prompt.is_empty() {
        None
    } else {
        let options = PlayOptions { loops: None, volume_db: None, barge_in };
        Some(
            media::play(call, &prompt, options)
                .map_err(|error| format!("the prompt cannot play: {}", error.message()))?,
        )
    };
    let mut prompt_playing = playback.is_some();
    let mut digits = String::new();
    // When the current timer runs out: the main timeout once the prompt is over and nothing is typed yet.
    let timer = |ms: u64| (ms > 0).then(|| clock::now_ms() + ms);
    let mut deadline = if prompt_playing { None } else { timer(timeout_ms) };
    let mut finished = false;
    let mut terminator = None;
    loop {
        let wait_ms = match deadline {
            Some(at) => {
                let left = at.saturating_sub(clock::now_ms());
                if left == 0 {
                    break;
                }
                Some(left.min(u64::from(u32::MAX)) as u32)
            }
            None if prompt_playing || !digits.is_empty() || timeout_ms == 0 => None,
            None => break,
        };
        match crate::next_media_update(call, wait_ms) {
            None => {}
            Some(MediaUpdate::PlaybackEnded(ended)) if playback.as_ref().is_some_and(|p| p.id() == ended.id) => {
                prompt_playing = false;
                if digits.is_empty() {
                    deadline = timer(timeout_ms);
                }
            }
            Some(MediaUpdate::Digit(digit)) => {
                if prompt_playing && !listen_during_prompt {
                    continue;
                }
                let key = digit.key.to_ascii_uppercase();
                if finish_keys.contains(key.as_str()) {
                    finished = true;
                    terminator = Some(key);
                    break;
                }
                digits.push_str(&key);
                if max_digits.is_some_and(|most| digits.len() >= most) {
                    finished = true;
                    break;
                }
                deadline = timer(inter_digit_ms);
            }
            Some(MediaUpdate::Call(CallUpdate::Event(CallEvent::Ended(_)))) => {
                return Ok(json!({"call_ended": true}));
            }
            Some(_) => {}
        }
    }
    if let Some(playback) = &playback {
        playback.stop();
    }
    let detected = finished || digits.len() >= min_digits;
    result.insert("reason".into(), json!(if detected { "dtmfDetected" } else { "timeout" }));
    if detected || !digits.is_empty() {
        result.insert("digits".into(), json!(digits));
    }
    let mut value = report(call, args, "gather", result);
    // Not in jambonz's payload: which finish key ended it, for SWML's `prompt_digit_terminator`.
    if let Some(key) = terminator {
        value["finish_key"] = json!(key);
    }
    Ok(value)
}

/// The nested `say` (`text`, `loop`, `synthesizer`) or `play` (`url`, `loop`) of a gather, as sources.
fn prompt_sources(args: &Value) -> Result<Vec<AudioSource>, String> {
    let mut sources = Vec::new();
    if let Some(say) = args.get("say") {
        let voice = sources::voice(crate::synthesizer_of(say).as_ref());
        let texts = sources::strings(say.get("text"));
        let once: Vec<AudioSource> = texts.iter().flat_map(|text| sources::speech(text, &voice)).collect();
        sources.extend(repeat(once, sources::loops(say.get("loop"))));
    }
    if let Some(play) = args.get("play") {
        let voice = sources::voice(None);
        let urls = sources::strings(play.get("url"));
        let once = urls.iter().map(|url| sources::url(url, &voice)).collect::<Result<Vec<_>, _>>()?;
        sources.extend(repeat(once, sources::loops(play.get("loop"))));
    }
    Ok(sources)
}

/// A prompt played `loops` times (a prompt looping forever plays ten times: the gather's timer starts
/// when it ends).
fn repeat(once: Vec<AudioSource>, loops: Option<u32>) -> Vec<AudioSource> {
    let times = match loops {
        Some(0) => 10,
        Some(n) => n.min(10) as usize,
        None => 1,
    };
    std::iter::repeat_n(once, times).flatten().collect()
}
