//! A call's media as the host sets it up: the SDP answer to a caller's offer, or our offer (an outbound
//! call's, or the 200's to an INVITE without one) and the far end's answer to it, on an RTP port pair of
//! our own; the media task that then runs the stream; and the answerer the SIP core uses for the far end's
//! later offers (hold, resume). When the far end's RTP stops for the inactivity timeout, the call is hung up.

use std::collections::HashMap;
use std::net::IpAddr;

use callwright_driver::SipHandle;
use callwright_driver::conference::{Conference, MemberId};
use callwright_driver::media::{MediaLeg, MediaOwner, MediaSockets, MediaUpdater};
use callwright_media::dtmf::DigitStep;
use callwright_media::sdp::{self, LocalMedia, Negotiated, Origin, SessionDescription};
use callwright_media::source::AudioSource;
use callwright_media::{
    Codec, Digit, DigitsId, MediaEvent, MediaStats, PlayOptions, PlaybackId, RecordOptions, RecordingId,
};
use callwright_sip::{CallHandle, OfferAnswer, OfferAnswerer};
use tracing::{info, warn};

use crate::recordings::RecordingWriter;

/// Why a call's media could not be set up, and the SIP status that says so.
#[derive(Debug)]
pub(crate) enum MediaSetupError {
    /// The offer or answer is not SDP we can use (400 malformed, 488 no codec in common).
    Sdp(callwright_media::Error),
    /// No RTP port pair was free (503).
    NoPorts(std::io::Error),
}

impl MediaSetupError {
    /// The status that rejects the call.
    pub(crate) fn status(&self) -> u16 {
        match self {
            MediaSetupError::Sdp(error) => error.sip_status(),
            MediaSetupError::NoPorts(_) => 503,
        }
    }

    /// A `Warning` header value (RFC 3261 §20.43) naming the problem: for a 488, code 305 (incompatible
    /// media format); for a 400, 399 (miscellaneous). A 503 says enough by itself.
    pub(crate) fn warning(&self, agent: &str) -> Option<String> {
        let code = match self.status() {
            488 => 305,
            400 => 399,
            _ => return None,
        };
        let text = self.to_string().replace('"', "'");
        Some(format!("{code} {agent} \"{text}\""))
    }
}

impl std::fmt::Display for MediaSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaSetupError::Sdp(error) => write!(f, "{error}"),
            MediaSetupError::NoPorts(error) => write!(f, "no RTP port: {error}"),
        }
    }
}

/// A call's media once it runs. Dropped with the call: the task stops (RTCP BYE, sockets closed) and logs
/// what the stream carried.
#[derive(Debug)]
pub(crate) struct CallMedia {
    leg: MediaLeg,
    /// The conference the call is in, and its member there.
    conference: Option<(Conference, MemberId)>,
    /// The names (ids in the recording store) of the session's recordings not ended yet.
    recording_names: HashMap<RecordingId, String>,
    /// The task's event channel closed (the session ended): nothing more to read.
    events_closed: bool,
}

impl CallMedia {
    /// The rate the call's audio is sampled at inside callwright (8 kHz, whatever the codec on the wire).
    pub(crate) fn clock_rate(&self) -> u32 {
        callwright_media::codec::SAMPLE_RATE
    }

    fn leg(&self) -> &MediaLeg {
        &self.leg
    }

    /// Queues a playback; `None` if the session has ended.
    pub(crate) async fn play(&self, source: Box<dyn AudioSource>, options: PlayOptions) -> Option<PlaybackId> {
        self.leg().play(source, options).await
    }

    /// Stops one playback.
    pub(crate) fn stop_playback(&self, id: PlaybackId) {
        self.leg().stop_playback(id);
    }

    /// Stops every playback.
    pub(crate) fn stop_all_playback(&self) {
        self.leg().stop_all_playback();
    }

    /// Sends digits as RFC 4733 events (an error when the far end offered none).
    pub(crate) async fn send_digits(
        &self,
        steps: Vec<DigitStep>,
        press: std::time::Duration,
    ) -> Option<Result<DigitsId, callwright_media::Error>> {
        self.leg().send_digits(steps, press).await
    }

    /// Starts a recording whose audio goes to `writer` (which names it); `None` if the session has ended.
    pub(crate) async fn record(&mut self, options: RecordOptions, writer: RecordingWriter) -> Option<RecordingId> {
        let name = writer.id().to_string();
        let id = self.leg().record(options, Box::new(writer)).await?;
        self.recording_names.insert(id, name);
        Some(id)
    }

    /// Stops a recording.
    pub(crate) fn stop_recording(&self, id: RecordingId) {
        self.leg().stop_recording(id);
    }

    /// The name of a recording that ended, forgotten here.
    pub(crate) fn take_recording_name(&mut self, id: RecordingId) -> Option<String> {
        self.recording_names.remove(&id)
    }

    /// Bridges this call's media with `other`'s (see [`MediaLeg::bridge`]), out of any conference.
    pub(crate) fn bridge(&mut self, other: &mut CallMedia) {
        self.leave_conference();
        other.leave_conference();
        MediaLeg::bridge(self.leg(), other.leg());
    }

    /// Ends the call's bridge or conference.
    pub(crate) fn unbridge(&mut self) {
        self.leave_conference();
        self.leg().unbridge();
    }

    /// Joins `conference` (leaving any other); false if it has ended meanwhile.
    pub(crate) fn join_conference(&mut self, conference: &Conference, muted: bool) -> bool {
        self.leave_conference();
        let Some(member) = conference.join(self.leg(), muted) else { return false };
        self.conference = Some((conference.clone(), member));
        true
    }

    /// Mutes or unmutes the call in its conference.
    pub(crate) fn mute_in_conference(&self, muted: bool) {
        if let Some((conference, member)) = &self.conference {
            conference.mute(*member, muted);
        }
    }

    /// Leaves the call's conference, if it is in one.
    pub(crate) fn leave_conference(&mut self) {
        if let Some((conference, member)) = self.conference.take() {
            conference.leave(member);
            self.leg().unbridge();
        }
    }

    /// Hands the session a digit that came by SIP INFO (it reports each press once, whatever carried it).
    pub(crate) fn info_digit(&self, digit: Digit) {
        self.leg().info_digit(digit);
    }

    /// The session's next event, when there is one.
    pub(crate) fn poll_event(&mut self, context: &mut std::task::Context<'_>) -> std::task::Poll<MediaEvent> {
        if self.events_closed {
            return std::task::Poll::Pending;
        }
        match self.leg.events.poll_recv(context) {
            std::task::Poll::Ready(Some(event)) => std::task::Poll::Ready(event),
            std::task::Poll::Ready(None) => {
                self.events_closed = true;
                std::task::Poll::Pending
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// The digit an INFO request carries (`application/dtmf-relay`, `application/dtmf`), if it carries one.
pub(crate) fn info_digit(request: &callwright_sip::message::Request) -> Option<Digit> {
    let content_type = request.headers.get("Content-Type")?;
    callwright_media::dtmf::parse_info(content_type, &request.body).ok()
}

/// What a call's media task tells the host: a far end gone silent is hung up, and the counts of a session
/// that ended are logged.
struct CallMediaOwner {
    sip: SipHandle,
    call: CallHandle,
}

impl MediaOwner for CallMediaOwner {
    fn far_end_silent(&mut self, silent_for: std::time::Duration) {
        info!(call = %self.call, ?silent_for, "no RTP from the far end: hanging up");
        spawn_hangup(self.sip.clone(), self.call);
    }

    fn ended(&mut self, stats: MediaStats) {
        info!(
            call = %self.call,
            sent = stats.packets_sent,
            received = stats.packets_received,
            lost = stats.packets_lost,
            late = stats.packets_late,
            jitter_us = stats.jitter_us,
            "media ended"
        );
    }
}

/// Our offer, waiting for its answer: in the 200 of an outbound call, or in the ACK of an inbound call that
/// came without an offer.
pub(crate) struct PendingOffer {
    sip: SipHandle,
    sockets: MediaSockets,
    local: LocalMedia,
    origin: Origin,
}

/// A port pair bound on `local_ip`, the local media that names it, and a fresh SDP origin.
async fn bind(
    sip: &SipHandle,
    local_ip: IpAddr,
    codecs: &[Codec],
) -> Result<(MediaSockets, LocalMedia, Origin), MediaSetupError> {
    let ports = sip.media();
    let sockets = ports.open(local_ip).await.map_err(MediaSetupError::NoPorts)?;
    let mut local = LocalMedia::new(ports.advertised(local_ip), sockets.port());
    if !codecs.is_empty() {
        local.codecs = codecs.to_vec();
    }
    Ok((sockets, local, ports.new_origin()))
}

/// Starts the media task of call `handle` on the agreed stream; returns it with the answerer of the far
/// end's later offers, for the SIP core.
fn start(
    sip: &SipHandle,
    handle: CallHandle,
    sockets: MediaSockets,
    negotiated: Negotiated,
    local: LocalMedia,
    origin: Origin,
) -> (CallMedia, OfferAnswerer) {
    info!(call = %handle, codec = %negotiated.codec, remote = %negotiated.remote_rtp, port = sockets.port(), "media started");
    let owner = Box::new(CallMediaOwner { sip: sip.clone(), call: handle });
    let leg = MediaLeg::spawn(sockets, sip.media().session_config(negotiated), owner);
    let answerer = offer_answerer(local, origin, leg.updater());
    (CallMedia { leg, conference: None, recording_names: HashMap::new(), events_closed: false }, answerer)
}

/// Answers `offer` on a port pair of our own on `local_ip` and starts the call's media. Returns the
/// answer's body, and the answerer of the far end's later offers to hand the SIP core with the answer.
pub(crate) async fn answer_offer(
    sip: &SipHandle,
    handle: CallHandle,
    local_ip: IpAddr,
    codecs: &[Codec],
    offer: &[u8],
) -> Result<(Vec<u8>, CallMedia, OfferAnswerer), MediaSetupError> {
    let offer = SessionDescription::parse(offer).map_err(MediaSetupError::Sdp)?;
    let (sockets, local, mut origin) = bind(sip, local_ip, codecs).await?;
    let (answer, negotiated) = sdp::answer(&offer, &local, &mut origin).map_err(MediaSetupError::Sdp)?;
    let (media, answerer) = start(sip, handle, sockets, negotiated, local, origin);
    Ok((answer, media, answerer))
}

/// An offer from `local_ip`, on a port pair held until the answer comes.
pub(crate) async fn offer(
    sip: &SipHandle,
    local_ip: IpAddr,
    codecs: &[Codec],
) -> Result<(Vec<u8>, PendingOffer), MediaSetupError> {
    let (sockets, local, mut origin) = bind(sip, local_ip, codecs).await?;
    let body = sdp::offer(&local, &mut origin);
    Ok((body, PendingOffer { sip: sip.clone(), sockets, local, origin }))
}

impl PendingOffer {
    /// Starts the call's media on the far end's `answer` to our offer. An answer we cannot use ends the
    /// call (RFC 3264 §6: the offerer hangs up on an answer it cannot accept).
    pub(crate) fn accept(self, handle: CallHandle, answer: &[u8]) -> Option<CallMedia> {
        let negotiated = SessionDescription::parse(answer).and_then(|answer| sdp::accept_answer(&answer, &self.local));
        let negotiated = match negotiated {
            Ok(negotiated) => negotiated,
            Err(error) => {
                warn!(call = %handle, %error, "the far end's SDP answer is unusable: hanging up");
                spawn_hangup(self.sip, handle);
                return None;
            }
        };
        let (media, answerer) = start(&self.sip, handle, self.sockets, negotiated, self.local, self.origin);
        let sip = self.sip;
        tokio::spawn(async move {
            let _ = sip.set_offer_answerer(handle, answerer).await;
        });
        Some(media)
    }
}

impl std::fmt::Debug for PendingOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingOffer").field("port", &self.sockets.port()).finish()
    }
}

/// Answers the far end's new offers inside the call (hold, resume, a new address) as the first one was,
/// continuing our SDP origin, and hands the media session the renegotiated stream. A refused offer
/// (488, 400) leaves the stream as it was.
fn offer_answerer(local: LocalMedia, origin: Origin, media: MediaUpdater) -> OfferAnswerer {
    Box::new(StreamNegotiator { local, origin, media })
}

/// The media side of a call's later offers and answers (see [`offer_answerer`]).
struct StreamNegotiator {
    local: LocalMedia,
    origin: Origin,
    media: MediaUpdater,
}

impl OfferAnswer for StreamNegotiator {
    fn answer(&mut self, offer: &[u8]) -> Result<Vec<u8>, u16> {
        let offer = SessionDescription::parse(offer).map_err(|error| error.sip_status())?;
        let (answer, negotiated) =
            sdp::answer(&offer, &self.local, &mut self.origin).map_err(|error| error.sip_status())?;
        info!(direction = ?negotiated.direction, remote = %negotiated.remote_rtp, "media renegotiated");
        self.media.update(negotiated);
        Ok(answer)
    }

    fn offer(&mut self) -> Option<Vec<u8>> {
        Some(sdp::offer(&self.local, &mut self.origin))
    }

    /// The answer in the ACK to our session offered again (a re-INVITE without SDP). One we cannot use
    /// leaves the stream as it was: the transaction is over, and the call is better kept than cut.
    fn accept_answer(&mut self, answer: &[u8]) {
        match SessionDescription::parse(answer).and_then(|answer| sdp::accept_answer(&answer, &self.local)) {
            Ok(negotiated) => {
                info!(direction = ?negotiated.direction, remote = %negotiated.remote_rtp, "media renegotiated");
                self.media.update(negotiated);
            }
            Err(error) => warn!(%error, "the far end's SDP answer in an ACK is unusable: the stream stays"),
        }
    }
}

/// Hangs call `handle` up from code that cannot wait for it.
fn spawn_hangup(sip: SipHandle, handle: CallHandle) {
    tokio::spawn(async move {
        let _ = sip.hangup(handle).await;
    });
}
