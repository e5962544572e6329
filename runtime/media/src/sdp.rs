//! SDP offer/answer for one audio stream (RFC 4566 descriptions, RFC 3264 negotiation).
//!
//! [`SessionDescription::parse`] reads what a peer sends; [`answer`] accepts the first audio stream of an offer
//! we can carry (declining the rest in their places, as RFC 3264 §6 requires) and [`offer`] with
//! [`accept_answer`] does the other side. Each returns a [`Negotiated`] stream: the codec, payload types,
//! packet time, where to send and in which direction media may flow, which is what a
//! [`MediaSession`](crate::MediaSession) needs.
//!
//! Codec choice follows the local preference list, not the offer's order, so an app can prefer PCMA or
//! whatever it records in; the answer names one codec plus telephone-event, which every peer accepts.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use crate::{Codec, Error};

/// The direction attribute of a stream (RFC 3264 §5.1, §8.4), from the side of whoever wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Both ways (the default).
    #[default]
    SendRecv,
    /// The writer sends and does not receive: it holds the other side.
    SendOnly,
    /// The writer receives and does not send.
    RecvOnly,
    /// Neither way.
    Inactive,
}

impl Direction {
    /// Whether the writer of this attribute sends.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the writer of this attribute receives.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The attribute name.
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// An `a=rtpmap:` line: a payload type's encoding, clock rate and channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// The payload type it names.
    pub payload_type: u8,
    /// The encoding name as written (`PCMU`, `telephone-event`, `opus`).
    pub encoding: String,
    /// The clock rate.
    pub clock_rate: u32,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `application`…
    pub kind: String,
    /// The transport port; 0 declines or removes the stream.
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`…
    pub proto: String,
    /// The format list as written.
    pub formats: Vec<String>,
    /// A media-level `c=` address, which overrides the session's.
    pub connection: Option<IpAddr>,
    /// The `a=rtpmap` lines.
    pub rtpmaps: Vec<RtpMap>,
    /// `a=ptime`, in milliseconds.
    pub ptime: Option<u32>,
    /// The direction attribute; absent means the session's, or sendrecv.
    pub direction: Option<Direction>,
    /// `a=rtcp-mux` (RFC 5761).
    pub rtcp_mux: bool,
    /// `a=rtcp:` (RFC 3605): the RTCP port when it is not the RTP port plus one.
    pub rtcp_port: Option<u16>,
}

/// A parsed session description: the session-level connection and direction, and the media sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// The session-level `c=` address.
    pub connection: Option<IpAddr>,
    /// A session-level direction attribute.
    pub direction: Option<Direction>,
    /// The `m=` sections in order.
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses an SDP body. Lines we do not use are skipped; the ones we use must be well formed.
    pub fn parse(body: &[u8]) -> Result<SessionDescription, Error> {
        let text = std::str::from_utf8(body).map_err(|_| Error::BadSdp("the body is not UTF-8".into()))?;
        let mut lines = text.lines().map(str::trim_end).filter(|l| !l.is_empty());
        if lines.next() != Some("v=0") {
            return Err(Error::BadSdp("it does not begin with v=0".into()));
        }
        let mut description = SessionDescription { connection: None, direction: None, media: Vec::new() };
        for line in lines {
            let Some((kind, value)) = line.split_once('=') else {
                return Err(Error::BadSdp(format!("line `{line}` has no `=`")));
            };
            match kind {
                "m" => description.media.push(parse_media_line(value)?),
                "c" => {
                    let address = parse_connection(value)?;
                    match description.media.last_mut() {
                        Some(media) => media.connection = Some(address),
                        None => description.connection = Some(address),
                    }
                }
                "a" => {
                    let direction = parse_direction(value);
                    match description.media.last_mut() {
                        Some(media) => parse_media_attribute(media, value)?,
                        None if direction.is_some() => description.direction = direction,
                        None => {}
                    }
                }
                _ => {}
            }
        }
        Ok(description)
    }
}

fn parse_media_line(value: &str) -> Result<MediaDescription, Error> {
    let mut parts = value.split_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::BadSdp(format!("m-line `{value}` needs media, port and protocol")));
    };
    let port = port.split('/').next().unwrap_or_default();
    let port = port.parse().map_err(|_| Error::BadSdp(format!("m-line port `{port}` is not a number")))?;
    Ok(MediaDescription {
        kind: kind.to_string(),
        port,
        proto: proto.to_string(),
        formats: parts.map(str::to_string).collect(),
        connection: None,
        rtpmaps: Vec::new(),
        ptime: None,
        direction: None,
        rtcp_mux: false,
        rtcp_port: None,
    })
}

fn parse_connection(value: &str) -> Result<IpAddr, Error> {
    let mut parts = value.split_whitespace();
    let (Some("IN"), Some(family @ ("IP4" | "IP6")), Some(address)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::BadSdp(format!("c-line `{value}` is not `IN IP4|IP6 address`")));
    };
    // A multicast address may carry /ttl/count; the address is what comes before.
    let address = address.split('/').next().unwrap_or_default();
    let parsed: IpAddr =
        address.parse().map_err(|_| Error::BadSdp(format!("c-line address `{address}` is not an IP address")))?;
    if parsed.is_ipv6() != (family == "IP6") {
        return Err(Error::BadSdp(format!("c-line address `{address}` is not {family}")));
    }
    Ok(parsed)
}

fn parse_direction(value: &str) -> Option<Direction> {
    match value {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

fn parse_media_attribute(media: &mut MediaDescription, value: &str) -> Result<(), Error> {
    if let Some(direction) = parse_direction(value) {
        media.direction = Some(direction);
    } else if value == "rtcp-mux" {
        media.rtcp_mux = true;
    } else if let Some(rtpmap) = value.strip_prefix("rtpmap:") {
        let bad = || Error::BadSdp(format!("`a={value}` is not `rtpmap:<pt> <encoding>/<rate>`"));
        let (payload_type, encoding) = rtpmap.split_once(' ').ok_or_else(bad)?;
        let mut encoding = encoding.trim().split('/');
        let name = encoding.next().ok_or_else(bad)?;
        let clock_rate = encoding.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
        let payload_type = payload_type.parse::<u8>().ok().filter(|pt| *pt < 128).ok_or_else(bad)?;
        media.rtpmaps.push(RtpMap { payload_type, encoding: name.to_string(), clock_rate });
    } else if let Some(ptime) = value.strip_prefix("ptime:") {
        media.ptime = ptime.trim().parse().ok();
    } else if let Some(rtcp) = value.strip_prefix("rtcp:") {
        media.rtcp_port = rtcp.split_whitespace().next().and_then(|p| p.parse().ok());
    }
    Ok(())
}

impl MediaDescription {
    /// What the payload type stands for here: its rtpmap, or the static assignment of RFC 3551.
    fn encoding_of(&self, payload_type: u8) -> Option<(String, u32)> {
        match self.rtpmaps.iter().find(|m| m.payload_type == payload_type) {
            Some(map) => Some((map.encoding.clone(), map.clock_rate)),
            None => {
                Codec::from_static_payload_type(payload_type).map(|c| (c.encoding_name().to_string(), c.clock_rate()))
            }
        }
    }

    fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse::<u8>().ok()).filter(|pt| *pt < 128)
    }

    /// The offered payload type for `codec`, if it is offered.
    fn payload_type_for(&self, codec: Codec) -> Option<u8> {
        self.payload_types().find(|&pt| {
            self.encoding_of(pt).is_some_and(|(name, rate)| Codec::from_encoding(&name, rate) == Some(codec))
        })
    }

    /// The payload type and clock of telephone-event for audio at `clock_rate`: the one at that rate, as
    /// RFC 4733 §2.1 asks, else one at 8 kHz (baresip and others offer only that beside Opus).
    fn telephone_event(&self, clock_rate: u32) -> Option<(u8, u32)> {
        let at = |wanted: u32| {
            self.payload_types().find(|&pt| {
                self.encoding_of(pt)
                    .is_some_and(|(name, rate)| name.eq_ignore_ascii_case("telephone-event") && rate == wanted)
            })
        };
        at(clock_rate).map(|pt| (pt, clock_rate)).or_else(|| at(8000).map(|pt| (pt, 8000)))
    }

    fn carries_plain_rtp_audio(&self) -> bool {
        self.kind == "audio" && self.port != 0 && matches!(self.proto.as_str(), "RTP/AVP" | "RTP/AVPF")
    }
}

/// What we offer or answer with: our address and port, codecs in order of preference, packet time, and the
/// direction we want (sendonly to hold the far end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// The address written in `c=` (the `--media-address`).
    pub address: IpAddr,
    /// Our RTP port.
    pub port: u16,
    /// Codecs in order of preference; never empty.
    pub codecs: Vec<Codec>,
    /// The packet time we send with unless the peer asks for another, in milliseconds.
    pub ptime_ms: u32,
    /// The direction we want.
    pub direction: Direction,
}

impl LocalMedia {
    /// Sendrecv audio on `address:port` with the default codecs and 20 ms packets.
    pub fn new(address: IpAddr, port: u16) -> LocalMedia {
        LocalMedia {
            address,
            port,
            codecs: Codec::ALL.to_vec(),
            ptime_ms: DEFAULT_PTIME_MS,
            direction: Direction::SendRecv,
        }
    }
}

/// The packet time when neither side names one (RFC 3551 §4.5: 20 ms for G.711).
pub const DEFAULT_PTIME_MS: u32 = 20;
/// The payload type our offers give telephone-event (any dynamic type would do; 101 is what peers expect).
pub const OFFERED_TELEPHONE_EVENT: u8 = 101;

/// The stream both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec both sides send.
    pub codec: Codec,
    /// Its payload type on the wire.
    pub payload_type: u8,
    /// The payload type of RFC 4733 events, when both sides support them.
    pub telephone_event: Option<u8>,
    /// The clock their durations count in (the audio's, or 8 kHz where that is all the peer offered).
    pub telephone_event_rate: u32,
    /// The packet time, in milliseconds.
    pub ptime_ms: u32,
    /// Where the peer receives RTP.
    pub remote_rtp: SocketAddr,
    /// Where the peer receives RTCP (the RTP address when multiplexed).
    pub remote_rtcp: SocketAddr,
    /// Whether RTP and RTCP share one port (RFC 5761).
    pub rtcp_mux: bool,
    /// The stream's direction from our side: whether we may send and whether the peer will.
    pub direction: Direction,
}

impl Negotiated {
    /// Whether we may send media now (the peer receives and did not put us on hold).
    pub fn we_send(&self) -> bool {
        self.direction.sends() && !self.remote_rtp.ip().is_unspecified()
    }
}

/// Packet times we pace at: whole frames of 10 ms, up to 60 ms, that the codec can carry.
fn usable_ptime(codec: Codec, ptime: Option<u32>, default: u32) -> u32 {
    let usable = |p: &u32| (10..=60).contains(p) && p.is_multiple_of(10) && codec.allows_ptime(*p);
    ptime.filter(usable).or(Some(default).filter(usable)).unwrap_or(DEFAULT_PTIME_MS)
}

fn remote_addresses(session: &SessionDescription, media: &MediaDescription) -> Result<(SocketAddr, SocketAddr), Error> {
    let ip = media
        .connection
        .or(session.connection)
        .ok_or_else(|| Error::BadSdp("the audio stream has no connection address (c=)".into()))?;
    let rtp = SocketAddr::new(ip, media.port);
    let rtcp = match (media.rtcp_mux, media.rtcp_port) {
        (true, _) => rtp,
        (false, Some(port)) => SocketAddr::new(ip, port),
        (false, None) => SocketAddr::new(ip, media.port.wrapping_add(1)),
    };
    Ok((rtp, rtcp))
}

/// Answers `offer`: the first audio stream with a codec from `local.codecs` is accepted, every other stream
/// declined. Returns the answer's body and the agreed stream; [`Error::NoCommonCodec`] (488) when no stream
/// can be accepted.
pub fn answer(
    offer: &SessionDescription,
    local: &LocalMedia,
    origin: &mut Origin,
) -> Result<(Vec<u8>, Negotiated), Error> {
    let mut body = String::new();
    let mut negotiated = None;
    for media in &offer.media {
        let accepted = if negotiated.is_none() && media.carries_plain_rtp_audio() {
            local.codecs.iter().find_map(|&codec| media.payload_type_for(codec).map(|pt| (codec, pt)))
        } else {
            None
        };
        let Some((codec, payload_type)) = accepted else {
            let format = media.formats.first().map_or("0", String::as_str);
            let _ = write!(body, "m={} 0 {} {format}\r\n", media.kind, media.proto);
            continue;
        };
        let (remote_rtp, remote_rtcp) = remote_addresses(offer, media)?;
        let offered = media.direction.or(offer.direction).unwrap_or_default();
        // c=0.0.0.0 is the hold of RFC 2543: the offerer asks not to be sent to.
        let offerer_receives = offered.receives() && !remote_rtp.ip().is_unspecified();
        let direction = Direction::from_flags(
            local.direction.sends() && offerer_receives,
            local.direction.receives() && offered.sends(),
        );
        let events = media.telephone_event(codec.clock_rate());
        let telephone_event = events.map(|(pt, _)| pt);
        let telephone_event_rate = events.map_or(codec.clock_rate(), |(_, rate)| rate);
        let ptime_ms = usable_ptime(codec, media.ptime, local.ptime_ms);
        write_audio_section(&mut body, &media.proto, local.port, codec, payload_type, events, ptime_ms, direction);
        if media.rtcp_mux {
            body.push_str("a=rtcp-mux\r\n");
        }
        negotiated = Some(Negotiated {
            codec,
            payload_type,
            telephone_event,
            telephone_event_rate,
            ptime_ms,
            remote_rtp,
            remote_rtcp,
            rtcp_mux: media.rtcp_mux,
            direction,
        });
    }
    let negotiated = negotiated.ok_or(Error::NoCommonCodec)?;
    Ok((origin.describe(local.address, &body), negotiated))
}

/// An offer of one audio stream with every codec of `local`, telephone-event and rtcp-mux.
pub fn offer(local: &LocalMedia, origin: &mut Origin) -> Vec<u8> {
    let mut body = String::new();
    let payload_types: Vec<u8> = local.codecs.iter().map(|c| offered_payload_type(*c)).collect();
    // telephone-event at each clock rate offered (RFC 4733 §2.1: the rate of the audio it goes with).
    let mut event_rates: Vec<u32> = local.codecs.iter().map(|c| c.clock_rate()).collect();
    event_rates.sort_unstable();
    event_rates.dedup();
    let events: Vec<(u8, u32)> = event_rates.iter().map(|&rate| (offered_telephone_event(rate), rate)).collect();
    let formats: Vec<String> =
        payload_types.iter().chain(events.iter().map(|(pt, _)| pt)).map(|pt| pt.to_string()).collect();
    let _ = write!(body, "m=audio {} RTP/AVP {}\r\n", local.port, formats.join(" "));
    for (codec, pt) in local.codecs.iter().zip(&payload_types) {
        let _ = write!(body, "a=rtpmap:{pt} {codec}\r\n");
    }
    for (te, rate) in events {
        let _ = write!(body, "a=rtpmap:{te} telephone-event/{rate}\r\na=fmtp:{te} 0-16\r\n");
    }
    let first = local.codecs.first().copied().unwrap_or(Codec::Pcmu);
    let ptime = usable_ptime(first, None, local.ptime_ms);
    let _ = write!(body, "a=ptime:{ptime}\r\na={}\r\na=rtcp-mux\r\n", local.direction.attribute());
    origin.describe(local.address, &body)
}

/// The payload type our offers give Opus (dynamic; 111 is what most peers use).
pub const OFFERED_OPUS: u8 = 111;
/// The payload type our offers give telephone-event at 48 kHz, beside Opus.
pub const OFFERED_TELEPHONE_EVENT_48K: u8 = 110;

fn offered_payload_type(codec: Codec) -> u8 {
    codec.static_payload_type().unwrap_or(OFFERED_OPUS)
}

fn offered_telephone_event(clock_rate: u32) -> u8 {
    if clock_rate == 48000 { OFFERED_TELEPHONE_EVENT_48K } else { OFFERED_TELEPHONE_EVENT }
}

/// Reads the answer to our [`offer`]: the first audio stream the peer kept, with a codec we offered.
pub fn accept_answer(answer: &SessionDescription, local: &LocalMedia) -> Result<Negotiated, Error> {
    let media = answer.media.iter().find(|m| m.carries_plain_rtp_audio()).ok_or(Error::NoCommonCodec)?;
    let (codec, payload_type) = media
        .payload_types()
        .find_map(|pt| {
            let (name, rate) = media.encoding_of(pt)?;
            let codec = Codec::from_encoding(&name, rate).filter(|c| local.codecs.contains(c))?;
            Some((codec, pt))
        })
        .ok_or(Error::NoCommonCodec)?;
    let (remote_rtp, remote_rtcp) = remote_addresses(answer, media)?;
    let answered = media.direction.or(answer.direction).unwrap_or_default();
    let events = media.telephone_event(codec.clock_rate());
    let direction = Direction::from_flags(
        local.direction.sends() && answered.receives() && !remote_rtp.ip().is_unspecified(),
        local.direction.receives() && answered.sends(),
    );
    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event: events.map(|(pt, _)| pt),
        telephone_event_rate: events.map_or(codec.clock_rate(), |(_, rate)| rate),
        ptime_ms: usable_ptime(codec, media.ptime, local.ptime_ms),
        remote_rtp,
        remote_rtcp,
        rtcp_mux: media.rtcp_mux,
        direction,
    })
}

#[allow(clippy::too_many_arguments)]
fn write_audio_section(
    body: &mut String,
    proto: &str,
    port: u16,
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<(u8, u32)>,
    ptime_ms: u32,
    direction: Direction,
) {
    match telephone_event {
        Some((te, rate)) => {
            let _ = write!(body, "m=audio {port} {proto} {payload_type} {te}\r\na=rtpmap:{payload_type} {codec}\r\n");
            let _ = write!(body, "a=rtpmap:{te} telephone-event/{rate}\r\na=fmtp:{te} 0-16\r\n");
        }
        None => {
            let _ = write!(body, "m=audio {port} {proto} {payload_type}\r\na=rtpmap:{payload_type} {codec}\r\n");
        }
    }
    let _ = write!(body, "a=ptime:{ptime_ms}\r\na={}\r\n", direction.attribute());
}

/// The `o=` line of one side's descriptions: its session id stays, its version goes up whenever the
/// description changes and only then (RFC 3264 §8).
#[derive(Debug, Clone)]
pub struct Origin {
    session_id: u64,
    version: u64,
    last_media: Option<String>,
}

impl Origin {
    /// An origin with this session id (any number unique to the call; the driver uses the wall clock).
    pub fn new(session_id: u64) -> Origin {
        Origin { session_id, version: session_id, last_media: None }
    }

    fn describe(&mut self, address: IpAddr, media: &str) -> Vec<u8> {
        let full = format!("{address}\n{media}");
        if self.last_media.as_deref() != Some(full.as_str()) {
            if self.last_media.is_some() {
                self.version += 1;
            }
            self.last_media = Some(full);
        }
        let family = if address.is_ipv6() { "IP6" } else { "IP4" };
        format!(
            "v=0\r\no=callwright {} {} IN {family} {address}\r\ns=callwright\r\nc=IN {family} {address}\r\nt=0 0\r\n{media}",
            self.session_id, self.version
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=ptime:30\r\nm=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";

    fn local() -> LocalMedia {
        LocalMedia::new("127.0.0.1".parse().unwrap(), 40000)
    }

    fn answer_text(offer: &str, local: &LocalMedia) -> Result<(String, Negotiated), Error> {
        let offer = SessionDescription::parse(offer.as_bytes())?;
        let (body, negotiated) = answer(&offer, local, &mut Origin::new(7))?;
        Ok((String::from_utf8(body).unwrap(), negotiated))
    }

    #[test]
    fn accepts_our_preferred_codec_and_declines_video_in_place() {
        let (text, negotiated) = answer_text(OFFER, &local()).unwrap();
        assert!(text.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{text}");
        assert!(text.contains("a=ptime:30\r\na=sendrecv\r\n"), "{text}");
        assert!(text.ends_with("m=video 0 RTP/AVP 96\r\n"), "{text}");
        assert_eq!(negotiated.codec, Codec::Pcmu);
        assert_eq!(negotiated.telephone_event, Some(101));
        assert_eq!(negotiated.remote_rtp, "192.0.2.1:4000".parse().unwrap());
        assert_eq!(negotiated.remote_rtcp, "192.0.2.1:4001".parse().unwrap());
        assert_eq!(negotiated.ptime_ms, 30);
    }

    #[test]
    fn an_app_preference_picks_pcma() {
        let local = LocalMedia { codecs: vec![Codec::Pcma, Codec::Pcmu], ..local() };
        let (text, negotiated) = answer_text(OFFER, &local).unwrap();
        assert!(text.contains("m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"), "{text}");
        assert_eq!(negotiated.codec, Codec::Pcma);
    }

    #[test]
    fn g722_and_opus_are_answered_with_their_own_clock_and_telephone_event() {
        let only_g722 = OFFER.replace("9 8 0 101", "9 101");
        let (text, negotiated) = answer_text(&only_g722, &local()).unwrap();
        assert_eq!(negotiated.codec, Codec::G722);
        assert!(text.contains("m=audio 40000 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\n"), "{text}");

        let opus = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
            m=audio 4000 RTP/AVP 96 97 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:97 telephone-event/48000\r\n\
            a=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\n";
        let (text, negotiated) = answer_text(opus, &local()).unwrap();
        assert_eq!(
            (negotiated.codec, negotiated.payload_type, negotiated.telephone_event),
            (Codec::Opus, 96, Some(97))
        );
        assert_eq!(negotiated.ptime_ms, 20, "Opus has no 30 ms frames");
        assert!(text.contains("m=audio 40000 RTP/AVP 96 97\r\na=rtpmap:96 opus/48000/2\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:97 telephone-event/48000\r\n"), "{text}");

        // Beside Opus, baresip offers telephone-event at 8 kHz only: it is taken, at its own clock.
        let eight_only = opus.replace(" 96 97 101", " 96 101").replace("a=rtpmap:97 telephone-event/48000\r\n", "");
        let (text, negotiated) = answer_text(&eight_only, &local()).unwrap();
        assert_eq!((negotiated.telephone_event, negotiated.telephone_event_rate), (Some(101), 8000));
        assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\n"), "{text}");
    }

    #[test]
    fn no_codec_in_common_is_488() {
        let error = answer_text(&OFFER.replace("9 8 0 101", "18 101"), &local()).unwrap_err();
        assert!(matches!(error, Error::NoCommonCodec));
        assert_eq!(error.sip_status(), 488);
        let srtp_only = OFFER.replace("RTP/AVP 9 8 0 101", "RTP/SAVP 0");
        assert!(matches!(answer_text(&srtp_only, &local()), Err(Error::NoCommonCodec)));
    }

    #[test]
    fn hold_directions_are_mirrored() {
        for (offered, answered, we_send) in [
            ("sendonly", "recvonly", false),
            ("recvonly", "sendonly", true),
            ("inactive", "inactive", false),
            ("sendrecv", "sendrecv", true),
        ] {
            let offer = OFFER.replace("a=ptime:30\r\n", &format!("a=ptime:30\r\na={offered}\r\n"));
            let (text, negotiated) = answer_text(&offer, &local()).unwrap();
            assert!(text.contains(&format!("a={answered}\r\n")), "{offered}: {text}");
            assert_eq!(negotiated.we_send(), we_send, "{offered}");
        }
        let old_hold = OFFER.replace("c=IN IP4 192.0.2.1", "c=IN IP4 0.0.0.0");
        let (text, negotiated) = answer_text(&old_hold, &local()).unwrap();
        assert!(text.contains("a=recvonly\r\n"), "{text}");
        assert!(!negotiated.we_send());
        let we_hold = LocalMedia { direction: Direction::SendOnly, ..local() };
        assert!(answer_text(OFFER, &we_hold).unwrap().0.contains("a=sendonly\r\n"));
    }

    #[test]
    fn rtcp_mux_media_connection_and_odd_ptime() {
        let offer = OFFER
            .replace("a=ptime:30\r\n", "a=ptime:25\r\na=rtcp-mux\r\nc=IN IP6 2001:db8::1\r\n")
            .replace("m=video 4002", "m=video 0");
        let (text, negotiated) = answer_text(&offer, &local()).unwrap();
        assert!(text.contains("a=rtcp-mux\r\n"), "{text}");
        assert_eq!(negotiated.remote_rtcp, "[2001:db8::1]:4000".parse().unwrap());
        assert_eq!(negotiated.ptime_ms, 20, "25 ms is not a whole number of 10 ms frames");
    }

    #[test]
    fn malformed_descriptions_name_the_problem() {
        for (bad, says) in [
            ("o=- 1 1 IN IP4 1.2.3.4\r\n", "v=0"),
            ("v=0\r\nc=IN IP4 nowhere\r\nm=audio 1 RTP/AVP 0\r\n", "not an IP address"),
            ("v=0\r\nm=audio x RTP/AVP 0\r\n", "not a number"),
            ("v=0\r\nm=audio 1\r\n", "needs media"),
            ("v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:300 PCMU/8000\r\n", "rtpmap"),
            ("v=0\r\nm=audio 1 RTP/AVP 0\r\ngarbage\r\n", "no `=`"),
        ] {
            let error = SessionDescription::parse(bad.as_bytes()).unwrap_err();
            assert!(error.to_string().contains(says), "{bad:?}: {error}");
            assert_eq!(error.sip_status(), 400);
        }
        let no_address = "v=0\r\nm=audio 1 RTP/AVP 0\r\n";
        assert!(answer_text(no_address, &local()).unwrap_err().to_string().contains("connection address"));
    }

    #[test]
    fn our_offer_is_accepted_by_our_answer_and_the_version_moves_only_on_change() {
        let mut origin = Origin::new(100);
        let offered = offer(&local(), &mut origin);
        let text = String::from_utf8(offered.clone()).unwrap();
        assert!(text.contains("o=callwright 100 100 IN IP4 127.0.0.1\r\n"), "{text}");
        assert!(text.contains("m=audio 40000 RTP/AVP 0 8 9 111 101 110\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:9 G722/8000\r\na=rtpmap:111 opus/48000/2\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:110 telephone-event/48000\r\na=fmtp:110 0-16\r\n"), "{text}");
        let parsed = SessionDescription::parse(&offered).unwrap();
        let (answer_body, _) =
            answer(&parsed, &LocalMedia::new("127.0.0.2".parse().unwrap(), 50000), &mut Origin::new(1)).unwrap();
        let negotiated = accept_answer(&SessionDescription::parse(&answer_body).unwrap(), &local()).unwrap();
        assert_eq!(negotiated.remote_rtp, "127.0.0.2:50000".parse().unwrap());
        assert_eq!(negotiated.codec, Codec::Pcmu);
        assert!(negotiated.rtcp_mux);
        let again = String::from_utf8(offer(&local(), &mut origin)).unwrap();
        assert!(again.contains("o=callwright 100 100 "), "unchanged: same version");
        let hold =
            String::from_utf8(offer(&LocalMedia { direction: Direction::SendOnly, ..local() }, &mut origin)).unwrap();
        assert!(hold.contains("o=callwright 100 101 "), "changed: next version");
    }
}
