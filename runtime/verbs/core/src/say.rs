//! jambonz `say` (and TwiML `<Say>`, SWML `play`'s `say:`): speaks `text` (one or a list, plain or SSML)
//! `loop` times with the built-in voice, or the `synthesizer`'s voice when its vendor is the built-in
//! one (a `config` verb's `synthesizer` stands in for a `say` that gives none). jambonz apps also send `silence_stream://N` as text: it is played as that silence.

use callwright_sdk::media::{AudioSource, PlayOptions};
use callwright_sdk::serde_json::{Value, json};
use callwright_sdk::{Call, Level, log};

use crate::play::{Played, play_and_wait};
use crate::sources;

pub(crate) fn say(call: &Call, args: &Value) -> Result<Value, String> {
    let texts = sources::strings(args.get("text"));
    if texts.is_empty() {
        return Err("text is required (a string or a list)".into());
    }
    let synthesizer = crate::synthesizer_of(args);
    let synthesizer = synthesizer.as_ref();
    if let Some(vendor) = synthesizer.and_then(|s| s.get("vendor")).and_then(Value::as_str)
        && !matches!(vendor, "flite" | "default")
    {
        log(Level::Warn, &format!("say: no speech provider `{vendor}` here; the built-in voice speaks"));
    }
    let voice = sources::voice(synthesizer);
    let sources: Vec<AudioSource> = texts.iter().flat_map(|text| sources::speech(text, &voice)).collect();
    if sources.is_empty() {
        return Ok(json!({}));
    }
    let options = PlayOptions { loops: sources::loops(args.get("loop")), volume_db: None, barge_in: false };
    match play_and_wait(call, &sources, options, None)? {
        Played::CallEnded => Ok(json!({"call_ended": true})),
        Played::Ended(_) => Ok(json!({})),
    }
}
