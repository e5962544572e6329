//! What the media verbs play: jambonz `say` text (plain or the SSML jambonz users write) and `play` URLs,
//! SWML's `say:`, `silence:` and `ring:` forms, and the FreeSWITCH `silence_stream://` and
//! `tone_stream://` addresses, each turned into the host's audio sources.

use callwright_sdk::media::{AudioSource, Ringback, Speech, Voice};
use callwright_sdk::serde_json::Value;

/// A string, or each string of an array (jambonz's `text` and `url` take both).
pub(crate) fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// jambonz's `loop`: a count, or `"forever"` (0: until stopped, to the host). None plays once.
pub(crate) fn loops(value: Option<&Value>) -> Option<u32> {
    match value {
        Some(Value::String(text)) if text.eq_ignore_ascii_case("forever") => Some(0),
        Some(Value::String(text)) => text.trim().parse().ok().filter(|n| *n > 0),
        Some(value) => value.as_u64().filter(|n| *n > 0).map(|n| n.min(u64::from(u32::MAX)) as u32),
        None => None,
    }
}

/// The voice of jambonz's `synthesizer` (`vendor`, `language`, `voice`). The built-in voice speaks for
/// any vendor callwright has no provider of (the vendor is named to the log by the verb).
pub(crate) fn voice(synthesizer: Option<&Value>) -> Voice {
    let text = |key: &str| synthesizer.and_then(|s| s.get(key)).and_then(Value::as_str).map(str::to_string);
    match text("vendor").as_deref() {
        None | Some("flite" | "default") => Voice { provider: None, name: text("voice"), language: text("language") },
        Some(_) => Voice { provider: None, name: None, language: None },
    }
}

/// The built-in voice for a gender as SWML (`say_gender`) and TwiML (`voice="woman"`, `"alice"`,
/// `"Polly.Joanna"`…) name it: flite's `slt` is a woman's voice, `kal` (the default) a man's.
pub(crate) fn voice_for_gender(gender: &str) -> Option<String> {
    match gender.to_ascii_lowercase().as_str() {
        "female" | "woman" | "alice" => Some("slt".into()),
        "male" | "man" => Some("kal".into()),
        _ => None,
    }
}

/// The sources of one `say` text: a FreeSWITCH stream address as itself (jambonz apps send
/// `silence_stream://100` as text), SSML as its spoken pieces and breaks, anything else as speech.
pub(crate) fn speech(text: &str, voice: &Voice) -> Vec<AudioSource> {
    let trimmed = text.trim();
    if trimmed.starts_with("silence_stream://") || trimmed.starts_with("tone_stream://") {
        return vec![AudioSource::Stream(trimmed.to_string())];
    }
    let say = |text: &str| AudioSource::Say(Speech { text: text.to_string(), voice: voice.clone() });
    if !trimmed.starts_with('<') {
        return if trimmed.is_empty() { Vec::new() } else { vec![say(trimmed)] };
    }
    ssml(trimmed)
        .into_iter()
        .map(|piece| match piece {
            Piece::Text(text) => say(&text),
            Piece::Break(ms) => AudioSource::Silence(ms),
        })
        .collect()
}

/// What SSML comes to for a voice without SSML of its own: text, and breaks.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Break(u32),
}

/// Reads SSML as jambonz users write it: `<break time="500ms"/>` (or `strength`) is silence; `<sub
/// alias="…">` speaks its alias; every other element (`<speak>`, `<say-as>`, `<prosody>`, `<p>`, `<s>`,
/// `<emphasis>`, …) gives its text; entities are decoded.
fn ssml(text: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut spoken = String::new();
    let mut rest = text;
    let mut skip_until_end_of_sub = false;
    while let Some(open) = rest.find('<') {
        if !skip_until_end_of_sub {
            spoken.push_str(&rest[..open]);
        }
        let Some(close) = rest[open..].find('>') else { break };
        let tag = &rest[open + 1..open + close];
        rest = &rest[open + close + 1..];
        let name = tag.trim_start_matches('/').split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("");
        match name {
            "break" => {
                flush(&mut spoken, &mut pieces);
                pieces.push(Piece::Break(break_ms(tag)));
            }
            "sub" if !tag.starts_with('/') => {
                if let Some(alias) = attribute(tag, "alias") {
                    spoken.push_str(&alias);
                    skip_until_end_of_sub = !tag.ends_with('/');
                }
            }
            "sub" => skip_until_end_of_sub = false,
            "p" | "s" => spoken.push(' '),
            _ => {}
        }
    }
    spoken.push_str(rest);
    flush(&mut spoken, &mut pieces);
    pieces
}

fn flush(spoken: &mut String, pieces: &mut Vec<Piece>) {
    let text = decode_entities(spoken.split_whitespace().collect::<Vec<_>>().join(" ").as_str());
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    spoken.clear();
}

fn decode_entities(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let at = tag.find(&format!("{name}="))? + name.len() + 1;
    let quote = tag[at..].chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &tag[at + 1..];
    value.find(quote).map(|end| decode_entities(&value[..end]))
}

/// A break's length: `time` in ms or s, else by `strength` (SSML 1.1's suggested lengths), else medium.
fn break_ms(tag: &str) -> u32 {
    if let Some(time) = attribute(tag, "time") {
        let time = time.trim();
        let (number, scale) = match time.strip_suffix("ms") {
            Some(ms) => (ms, 1.0),
            None => (time.strip_suffix('s').unwrap_or(time), 1000.0),
        };
        if let Ok(value) = number.trim().parse::<f64>() {
            return (value * scale).clamp(0.0, 10_000.0) as u32;
        }
    }
    match attribute(tag, "strength").as_deref() {
        Some("none") => 0,
        Some("x-weak") => 100,
        Some("weak") => 250,
        Some("strong") => 750,
        Some("x-strong") => 1000,
        _ => 500,
    }
}

/// The source of one `play` URL: http(s) (WAV or MP3), a FreeSWITCH stream address, or SWML's `say:TEXT`,
/// `silence:SECONDS` and `ring:[SECONDS:]COUNTRY`.
pub(crate) fn url(url: &str, voice: &Voice) -> Result<AudioSource, String> {
    let url = url.trim();
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(AudioSource::Url(url.to_string()));
    }
    if url.starts_with("silence_stream://") || url.starts_with("tone_stream://") {
        return Ok(AudioSource::Stream(url.to_string()));
    }
    if let Some(text) = url.strip_prefix("say:") {
        return Ok(AudioSource::Say(Speech { text: text.trim().to_string(), voice: voice.clone() }));
    }
    let seconds = |text: &str| text.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0);
    if let Some(length) = url.strip_prefix("silence:") {
        let seconds = seconds(length).ok_or_else(|| format!("`{url}`: silence takes seconds"))?;
        return Ok(AudioSource::Silence((seconds * 1000.0).min(f64::from(u32::MAX)) as u32));
    }
    if let Some(ring) = url.strip_prefix("ring:") {
        let (duration_ms, country) = match ring.split_once(':') {
            Some((duration, country)) => {
                let seconds = seconds(duration).ok_or_else(|| format!("`{url}`: the ring's duration is in seconds"))?;
                (Some((seconds * 1000.0).min(f64::from(u32::MAX)) as u32), country)
            }
            None => (None, ring),
        };
        return Ok(AudioSource::Ringback(Ringback { country: country.trim().to_ascii_lowercase(), duration_ms }));
    }
    Err(format!(
        "`{url}` is not something to play (http(s) URL, silence_stream://, tone_stream://, say:, silence:, ring:)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use callwright_sdk::serde_json::json;

    #[test]
    fn ssml_gives_its_text_and_breaks() {
        let pieces = ssml(
            r#"<speak>Hello <say-as interpret-as="characters">AB</say-as>.<break time="1.5s"/>Your code is <sub alias="one two">12</sub> &amp; done<break strength="weak"/></speak>"#,
        );
        assert_eq!(
            pieces,
            [
                Piece::Text("Hello AB.".into()),
                Piece::Break(1500),
                Piece::Text("Your code is one two & done".into()),
                Piece::Break(250),
            ]
        );
        assert_eq!(ssml(r#"<speak><break time="300ms"/></speak>"#), [Piece::Break(300)]);
    }

    #[test]
    fn texts_urls_and_loops_read_as_jambonz_and_swml_write_them() {
        let voice = voice(None);
        assert_eq!(strings(Some(&json!(["a", "b"]))), ["a", "b"]);
        assert_eq!(strings(Some(&json!("a"))), ["a"]);
        assert_eq!((loops(Some(&json!("forever"))), loops(Some(&json!(3))), loops(None)), (Some(0), Some(3), None));
        assert!(matches!(&speech("silence_stream://100", &voice)[..], [AudioSource::Stream(_)]));
        assert!(matches!(url("silence:1.5", &voice), Ok(AudioSource::Silence(1500))));
        assert!(matches!(
            url("ring:20:US", &voice),
            Ok(AudioSource::Ringback(Ringback { duration_ms: Some(20000), .. }))
        ));
        assert!(matches!(url("say:hello", &voice), Ok(AudioSource::Say(_))));
        assert!(url("ftp://x/y.wav", &voice).unwrap_err().contains("not something to play"));
        assert!(url("silence:x", &voice).is_err());
        // A vendor callwright has no provider of speaks with the built-in voice.
        let google = self::voice(Some(&json!({"vendor": "google", "voice": "en-US-Wavenet-C"})));
        assert_eq!(google.name, None);
        assert_eq!((voice_for_gender("Female"), voice_for_gender("man")), (Some("slt".into()), Some("kal".into())));
    }
}
