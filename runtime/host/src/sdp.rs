//! The SDP the host writes when a guest gives none (RFC 3264 offer/answer): the answer to a caller's offer,
//! and the offer of an outbound call.
//!
//! callwright carries no media yet, so the answer is honest about it: each audio stream is accepted with
//! the first codec we could one day play (PCMU, PCMA) plus telephone-event when offered, on the discard
//! port 9; every other stream is declined with port 0, keeping the offer's m-line order as RFC 3264
//! requires.

use std::net::IpAddr;

/// Static payload types we can name: (payload type, encoding name).
const AUDIO_CODECS: [(&str, &str); 2] = [("0", "PCMU/8000"), ("8", "PCMA/8000")];
/// The RTP port of an answer that carries no media.
const NO_MEDIA_PORT: u16 = 9;

/// One `m=` section of an offer.
struct MediaSection<'a> {
    media: &'a str,
    proto: &'a str,
    formats: Vec<&'a str>,
    attributes: Vec<&'a str>,
}

fn sections(offer: &str) -> Vec<MediaSection<'_>> {
    let mut sections: Vec<MediaSection<'_>> = Vec::new();
    for line in offer.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let media = parts.next().unwrap_or_default();
            let _port = parts.next();
            let proto = parts.next().unwrap_or("RTP/AVP");
            sections.push(MediaSection { media, proto, formats: parts.collect(), attributes: Vec::new() });
        } else if let (Some(a), Some(section)) = (line.strip_prefix("a="), sections.last_mut()) {
            section.attributes.push(a);
        }
    }
    sections
}

/// The dynamic payload type the offer uses for telephone-event, if any.
fn telephone_event(section: &MediaSection<'_>) -> Option<String> {
    section.attributes.iter().find_map(|a| {
        let (pt, encoding) = a.strip_prefix("rtpmap:")?.split_once(' ')?;
        encoding.to_ascii_lowercase().starts_with("telephone-event/8000").then(|| pt.to_string())
    })
}

/// The codec to answer with: the first offered format we know by static type or by rtpmap name.
fn pick_codec(section: &MediaSection<'_>) -> Option<(String, &'static str)> {
    section.formats.iter().find_map(|format| {
        if let Some((pt, name)) = AUDIO_CODECS.iter().find(|(pt, _)| pt == format) {
            return Some((pt.to_string(), *name));
        }
        let mapped = section.attributes.iter().find_map(|a| {
            let (pt, encoding) = a.strip_prefix("rtpmap:")?.split_once(' ')?;
            (pt == *format).then_some(encoding)
        })?;
        AUDIO_CODECS
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(mapped))
            .map(|(_, name)| (format.to_string(), *name))
    })
}

/// An answer to `offer` from `local_ip`; `None` when the offer is not SDP we can read.
pub(crate) fn answer(offer: &[u8], local_ip: IpAddr) -> Option<Vec<u8>> {
    let offer = std::str::from_utf8(offer).ok()?;
    if !offer.trim_start().starts_with("v=0") {
        return None;
    }
    let mut sdp = session_header(local_ip);
    let mut accepted_any = false;
    for section in sections(offer) {
        let codec =
            (section.media == "audio" && section.proto.starts_with("RTP/")).then(|| pick_codec(&section)).flatten();
        match codec {
            Some((pt, name)) if !accepted_any => {
                accepted_any = true;
                let event = telephone_event(&section);
                let formats = match &event {
                    Some(te) => format!("{pt} {te}"),
                    None => pt.clone(),
                };
                sdp.push_str(&format!(
                    "m=audio {NO_MEDIA_PORT} {} {formats}\r\na=rtpmap:{pt} {name}\r\n",
                    section.proto
                ));
                if let Some(te) = event {
                    sdp.push_str(&format!("a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"));
                }
                sdp.push_str("a=sendrecv\r\n");
            }
            _ => {
                let format = section.formats.first().copied().unwrap_or("0");
                sdp.push_str(&format!("m={} 0 {} {format}\r\n", section.media, section.proto));
            }
        }
    }
    Some(sdp.into_bytes())
}

/// The payload type the host's offer uses for telephone-event (RFC 4733).
const OFFERED_TELEPHONE_EVENT: &str = "101";

/// An offer from `local_ip` for an outbound call: one audio stream with PCMU, PCMA and telephone-event on
/// the discard port, until callwright carries media.
pub(crate) fn offer(local_ip: IpAddr) -> Vec<u8> {
    let mut sdp = session_header(local_ip);
    let te = OFFERED_TELEPHONE_EVENT;
    let formats: Vec<&str> = AUDIO_CODECS.iter().map(|(pt, _)| *pt).chain([te]).collect();
    sdp.push_str(&format!("m=audio {NO_MEDIA_PORT} RTP/AVP {}\r\n", formats.join(" ")));
    for (pt, name) in AUDIO_CODECS {
        sdp.push_str(&format!("a=rtpmap:{pt} {name}\r\n"));
    }
    sdp.push_str(&format!("a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\na=sendrecv\r\n"));
    sdp.into_bytes()
}

/// The session-level lines (v, o, s, c, t) of a description from `local_ip`.
fn session_header(local_ip: IpAddr) -> String {
    let family = if local_ip.is_ipv6() { "IP6" } else { "IP4" };
    let session_id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    format!(
        "v=0\r\no=callwright {session_id} {session_id} IN {family} {local_ip}\r\ns=callwright\r\nc=IN {family} {local_ip}\r\nt=0 0\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
        m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";

    #[test]
    fn accepts_the_first_known_audio_codec_and_declines_video() {
        let answer = String::from_utf8(answer(OFFER.as_bytes(), "127.0.0.1".parse().unwrap()).unwrap()).unwrap();
        assert!(answer.contains("m=audio 9 RTP/AVP 8 101\r\n"), "{answer}");
        assert!(answer.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(answer.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(answer.contains("m=video 0 RTP/AVP 96\r\n"), "declined stream keeps its place");
        assert!(answer.contains("c=IN IP4 127.0.0.1"));
    }

    #[test]
    fn declines_audio_it_cannot_name_and_ignores_non_sdp() {
        let offer = OFFER.replace("9 8 0 101", "9");
        let answer = String::from_utf8(answer(offer.as_bytes(), "::1".parse().unwrap()).unwrap()).unwrap();
        assert!(answer.contains("m=audio 0 RTP/AVP 9\r\n"), "{answer}");
        assert!(answer.contains("c=IN IP6 ::1"));
        assert!(super::answer(b"<xml/>", "127.0.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn the_offer_is_one_audio_stream_that_our_own_answer_accepts() {
        let offer = offer("127.0.0.1".parse().unwrap());
        let text = String::from_utf8(offer.clone()).unwrap();
        assert!(text.contains("m=audio 9 RTP/AVP 0 8 101\r\n"), "{text}");
        let answer = String::from_utf8(answer(&offer, "127.0.0.1".parse().unwrap()).unwrap()).unwrap();
        assert!(answer.contains("m=audio 9 RTP/AVP 0 101\r\n"), "{answer}");
    }
}
