//! Media: what the guest's calls hear (playbacks of files, URLs, speech, tones), the keys their callers
//! press, the digits the guest sends, and recordings (written by the call's media task into the server's
//! [`crate::recordings::RecordingStore`]). Serves the `media` interface over the media of the calls in
//! [`Calls`] (each answered call's [`crate::media::CallMedia`]).
//!
//! `media.wait` is `call.wait` with the media's events beside the SIP ones: a digit from any source (an
//! INFO carrying one is answered 200 here, since the digit is what the guest sees), a playback's end, the
//! end of a digit string we sent.

use std::sync::Arc;
use std::time::Duration;

use callwright_media::dtmf::{self, DigitStep};
use callwright_media::source::{self, AudioSource, Samples, Sequence, Tone};
use callwright_media::{
    DigitSource, Error as MediaError, MediaEvent, PlayOptions, PlaybackEnd, PlaybackId, RecordDirection, RecordOptions,
    RecordingEnd, RecordingId,
};
use callwright_sip::message::Method;
use callwright_sip::{CallHandle, Event, Extras, InDialogRequest};
use wasmtime::Result;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::call_control::{Next, leg_end_reason, to_guest_update};
use super::{CallSetup, Calls, Capability};
use crate::apps::HookSettings;
use crate::bindings::callwright::voice::media::{
    self, AudioSource as WitSource, Digit as WitDigit, DigitSource as WitDigitSource, MediaError as WitMediaError,
    MediaUpdate, PlayOptions as WitPlayOptions, PlaybackEnd as WitPlaybackEnd, PlaybackEnded,
    RecordDirection as WitRecordDirection, RecordOptions as WitRecordOptions, RecordingEnd as WitRecordingEnd,
    RecordingEnded,
};
use crate::bindings::{CallEvent, CallUpdate};
use crate::call_state::{CallResource, CallState, Leg};
use crate::media_store::{MediaStore, SpeechRequest};
use crate::recordings::RecordingUpload;

/// How long a sent key is held when the guest does not say.
const DEFAULT_PRESS: Duration = Duration::from_millis(100);
/// The shortest and longest press we send (RFC 4733 §2.5.1.3 suggests at least 40 ms).
const PRESS_RANGE: (Duration, Duration) = (Duration::from_millis(40), Duration::from_secs(5));
/// The DTMF tones of an `audio-source.dtmf-tones`: each key this long, then this much silence.
const TONE_KEY: Duration = Duration::from_millis(100);
const TONE_GAP: Duration = Duration::from_millis(100);
/// The longest recording, and the length of one that names none.
const MAX_RECORDING: Duration = Duration::from_secs(3600);

/// The media unit.
pub(crate) struct Media;

/// Its state: where prompts come from, and what a URL may reach.
pub(crate) struct GuestMedia {
    store: Option<Arc<MediaStore>>,
    /// The app: conferences are found by name within it.
    app: String,
    client: reqwest::Client,
    hooks: HookSettings,
    /// Where finished recordings are posted (checked against the allow list when the app was stored).
    recording_upload: Option<RecordingUpload>,
}

/// The host side of a guest's `playback` resource.
#[derive(Debug)]
pub struct PlaybackResource {
    call: CallHandle,
    id: PlaybackId,
}

/// The host side of a guest's `recording` resource.
#[derive(Debug)]
pub struct RecordingResource {
    call: CallHandle,
    id: RecordingId,
    name: String,
}

/// What the glue of the `media` interface sees: the resource table, the calls, and its own state.
pub(crate) struct MediaView<'a> {
    table: &'a mut ResourceTable,
    calls: &'a mut Calls,
    media: &'a mut GuestMedia,
}

struct MediaData;

impl HasData for MediaData {
    type Data<'a> = MediaView<'a>;
}

impl Capability for Media {
    const INTERFACES: &'static [&'static str] = &["callwright:voice/media"];
    type State = GuestMedia;

    fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        media::add_to_linker::<CallState, MediaData>(linker, |state| MediaView {
            table: &mut state.table,
            calls: &mut state.calls,
            media: &mut state.media,
        })
    }

    fn state(setup: &CallSetup<'_>) -> GuestMedia {
        GuestMedia {
            store: setup.media.clone(),
            app: setup.app.clone(),
            client: setup.hook_client.clone(),
            hooks: setup.hooks.clone(),
            recording_upload: setup.recording_hook.as_deref().and_then(|hook| {
                let url = reqwest::Url::parse(hook).ok().filter(|url| setup.hooks.allows(url))?;
                Some(RecordingUpload { client: setup.hook_client.clone(), url, secret: setup.hooks.secret.clone() })
            }),
        }
    }

    fn lend(caller: &mut GuestMedia, _label: &str) -> GuestMedia {
        GuestMedia {
            store: caller.store.clone(),
            app: caller.app.clone(),
            client: caller.client.clone(),
            hooks: caller.hooks.clone(),
            recording_upload: caller.recording_upload.clone(),
        }
    }
}

impl MediaView<'_> {
    fn handle(&self, call: &Resource<CallResource>) -> Result<CallHandle> {
        Ok(self.table.get(call)?.handle)
    }

    /// The clock rate of the call's media, or why it has none.
    fn media_rate(&mut self, handle: CallHandle) -> Result<Result<u32, WitMediaError>> {
        let leg = self.calls.leg(handle)?;
        Ok(match (&leg.media, &leg.ended) {
            (_, Some(_)) => Err(WitMediaError::CallEnded),
            (Some(media), None) => Ok(media.clock_rate()),
            (None, None) => Err(WitMediaError::NoMedia),
        })
    }
}

impl GuestMedia {
    /// One source, ready to read at `rate`.
    async fn source(&self, source: WitSource, rate: u32) -> Result<Box<dyn AudioSource>, WitMediaError> {
        let bad = |why: String| WitMediaError::BadSource(why);
        let store = || self.store.as_ref().ok_or_else(|| bad("this server keeps no media".into()));
        Ok(match source {
            WitSource::Url(url) => {
                let audio = store()?.url(&self.client, &self.hooks, &url, rate).await.map_err(|e| bad(e.0))?;
                Box::new(Samples::new(audio))
            }
            WitSource::File(name) => Box::new(Samples::new(store()?.file(&name, rate).map_err(|e| bad(e.0))?)),
            WitSource::Say(speech) => {
                let request = SpeechRequest {
                    provider: speech.voice.provider,
                    voice: speech.voice.name,
                    language: speech.voice.language,
                    text: speech.text,
                };
                Box::new(Samples::new(store()?.speech(&request, rate).await.map_err(|e| bad(e.0))?))
            }
            WitSource::Silence(ms) => Box::new(Tone::silence(Duration::from_millis(ms.into()), rate)),
            WitSource::DtmfTones(keys) => {
                let mut tones: Vec<Box<dyn AudioSource>> = Vec::new();
                for key in keys.chars() {
                    let tone = Tone::dtmf(key, TONE_KEY, rate)
                        .ok_or_else(|| bad(format!("`{key}` in `{keys}` is not a DTMF key")))?;
                    tones.push(Box::new(tone));
                    tones.push(Box::new(Tone::silence(TONE_GAP, rate)));
                }
                Box::new(Sequence::new(tones))
            }
            WitSource::Ringback(ring) => {
                let tone = source::ringback(&ring.country, rate)
                    .ok_or_else(|| bad(format!("no ring-back tone for country `{}`", ring.country)))?;
                match ring.duration_ms {
                    Some(ms) => Box::new(tone.limited_to(Duration::from_millis(ms.into()))),
                    None => Box::new(tone),
                }
            }
            WitSource::Stream(address) => match source::parse_stream_address(&address, rate) {
                Some(Ok(tone)) => Box::new(tone),
                Some(Err(error)) => return Err(bad(error.to_string())),
                None => return Err(bad(format!("`{address}` is neither silence_stream:// nor tone_stream://"))),
            },
        })
    }
}

impl media::Host for MediaView<'_> {
    async fn play(
        &mut self,
        call: Resource<CallResource>,
        sources: Vec<WitSource>,
        options: WitPlayOptions,
    ) -> Result<Result<Resource<PlaybackResource>, WitMediaError>> {
        let handle = self.handle(&call)?;
        let rate = match self.media_rate(handle)? {
            Ok(rate) => rate,
            Err(error) => return Ok(Err(error)),
        };
        if sources.is_empty() {
            return Ok(Err(WitMediaError::InvalidArgument("play needs at least one source".into())));
        }
        let mut ready = Vec::with_capacity(sources.len());
        for source in sources {
            match self.media.source(source, rate).await {
                Ok(source) => ready.push(source),
                Err(error) => return Ok(Err(error)),
            }
        }
        let options = PlayOptions {
            loops: match options.loops {
                None => Some(1),
                Some(0) => None,
                Some(n) => Some(n),
            },
            gain_db: options.volume_db.unwrap_or(0.0).clamp(-40.0, 40.0),
            barge_in: options.barge_in,
        };
        // The call may have ended while its sources were fetched.
        let leg = self.calls.leg(handle)?;
        let Some(media) = leg.media.as_ref().filter(|_| leg.ended.is_none()) else {
            return Ok(Err(WitMediaError::CallEnded));
        };
        match media.play(Box::new(Sequence::new(ready)), options).await {
            Some(id) => Ok(Ok(self.table.push(PlaybackResource { call: handle, id })?)),
            None => Ok(Err(WitMediaError::CallEnded)),
        }
    }

    async fn stop_playback(&mut self, call: Resource<CallResource>) -> Result<()> {
        let handle = self.handle(&call)?;
        if let Some(media) = &self.calls.leg(handle)?.media {
            media.stop_all_playback();
        }
        Ok(())
    }

    async fn send_digits(
        &mut self,
        call: Resource<CallResource>,
        digits: String,
        duration_ms: Option<u32>,
    ) -> Result<Result<(), WitMediaError>> {
        let handle = self.handle(&call)?;
        if let Err(error) = self.media_rate(handle)? {
            return Ok(Err(error));
        }
        let steps = match dtmf::parse_digit_string(&digits) {
            Ok(steps) => steps,
            Err(error) => return Ok(Err(WitMediaError::InvalidArgument(error.to_string()))),
        };
        let press = duration_ms.map_or(DEFAULT_PRESS, |ms| Duration::from_millis(ms.into()));
        let press = press.clamp(PRESS_RANGE.0, PRESS_RANGE.1);
        let leg = self.calls.leg(handle)?;
        let Some(media) = leg.media.as_ref() else { return Ok(Err(WitMediaError::NoMedia)) };
        match media.send_digits(steps.clone(), press).await {
            Some(Ok(_)) => Ok(Ok(())),
            Some(Err(MediaError::NoTelephoneEvent)) => self.calls.send_digits_as_info(handle, &steps, press).await,
            Some(Err(error)) => Ok(Err(WitMediaError::InvalidArgument(error.to_string()))),
            None => Ok(Err(WitMediaError::CallEnded)),
        }
    }

    async fn bridge(
        &mut self,
        a: Resource<CallResource>,
        b: Resource<CallResource>,
    ) -> Result<Result<(), WitMediaError>> {
        let (a, b) = (self.handle(&a)?, self.handle(&b)?);
        if a == b {
            return Ok(Err(WitMediaError::InvalidArgument("a call cannot be bridged to itself".into())));
        }
        for handle in [a, b] {
            if let Err(error) = self.media_rate(handle)? {
                return Ok(Err(error));
            }
        }
        let Some(mut first) = self.calls.leg(a)?.media.take() else { return Ok(Err(WitMediaError::NoMedia)) };
        if let Some(second) = self.calls.leg(b)?.media.as_mut() {
            first.bridge(second);
        }
        self.calls.leg(a)?.media = Some(first);
        Ok(Ok(()))
    }

    async fn unbridge(&mut self, call: Resource<CallResource>) -> Result<()> {
        let handle = self.handle(&call)?;
        if let Some(media) = self.calls.leg(handle)?.media.as_mut() {
            media.unbridge();
        }
        Ok(())
    }

    async fn conference_join(
        &mut self,
        call: Resource<CallResource>,
        name: String,
        muted: bool,
    ) -> Result<Result<(), WitMediaError>> {
        let handle = self.handle(&call)?;
        if let Err(error) = self.media_rate(handle)? {
            return Ok(Err(error));
        }
        let Some(store) = self.media.store.clone() else {
            return Ok(Err(WitMediaError::InvalidArgument("this server runs no conferences".into())));
        };
        let Some(media) = self.calls.leg(handle)?.media.as_mut() else { return Ok(Err(WitMediaError::NoMedia)) };
        // A conference whose last member left just now ends: the second try starts a new one.
        for _ in 0..2 {
            let conference = match store.conference(&self.media.app, &name) {
                Ok(conference) => conference,
                Err(error) => return Ok(Err(WitMediaError::InvalidArgument(error.0))),
            };
            if media.join_conference(&conference, muted) {
                return Ok(Ok(()));
            }
        }
        Ok(Err(WitMediaError::InvalidArgument(format!("conference `{name}` could not be joined"))))
    }

    async fn conference_mute(&mut self, call: Resource<CallResource>, muted: bool) -> Result<()> {
        let handle = self.handle(&call)?;
        if let Some(media) = &self.calls.leg(handle)?.media {
            media.mute_in_conference(muted);
        }
        Ok(())
    }

    async fn conference_leave(&mut self, call: Resource<CallResource>) -> Result<()> {
        let handle = self.handle(&call)?;
        if let Some(media) = self.calls.leg(handle)?.media.as_mut() {
            media.leave_conference();
        }
        Ok(())
    }

    async fn record(
        &mut self,
        call: Resource<CallResource>,
        options: WitRecordOptions,
    ) -> Result<Result<Resource<RecordingResource>, WitMediaError>> {
        let handle = self.handle(&call)?;
        let rate = match self.media_rate(handle)? {
            Ok(rate) => rate,
            Err(error) => return Ok(Err(error)),
        };
        let Some(store) = self.media.store.clone() else {
            return Ok(Err(WitMediaError::InvalidArgument("this server keeps no recordings".into())));
        };
        let keys = options.finish_on_keys.unwrap_or_default();
        if let Some(key) = keys.chars().find(|key| dtmf::event_code(*key).is_none()) {
            return Ok(Err(WitMediaError::InvalidArgument(format!("finish key `{key}` is not a DTMF key"))));
        }
        let ms = |ms: u32| Duration::from_millis(ms.into());
        let direction = match options.direction.unwrap_or(WitRecordDirection::Received) {
            WitRecordDirection::Received => RecordDirection::Received,
            WitRecordDirection::Sent => RecordDirection::Sent,
            WitRecordDirection::Both => RecordDirection::Both,
        };
        let stereo = options.stereo && direction == RecordDirection::Both;
        let options = RecordOptions {
            direction,
            stereo,
            max_length: options.max_ms.map_or(MAX_RECORDING, ms).min(MAX_RECORDING),
            end_on_silence: options.end_on_silence_ms.map(ms),
            initial_timeout: options.no_input_ms.map(ms),
            finish_on_keys: keys.to_ascii_uppercase(),
            beep: options.beep,
        };
        let writer = match store.recordings.create(&self.calls.label, rate, if stereo { 2 } else { 1 }) {
            Ok(writer) => writer,
            Err(error) => return Ok(Err(WitMediaError::InvalidArgument(format!("cannot store a recording: {error}")))),
        };
        let mut writer = writer;
        if let Some(upload) = &self.media.recording_upload {
            writer.post_when_kept(upload.clone());
        }
        let name = writer.id().to_string();
        let leg = self.calls.leg(handle)?;
        let Some(media) = leg.media.as_mut() else { return Ok(Err(WitMediaError::CallEnded)) };
        match media.record(options, writer).await {
            Some(id) => Ok(Ok(self.table.push(RecordingResource { call: handle, id, name })?)),
            None => Ok(Err(WitMediaError::CallEnded)),
        }
    }

    async fn wait(
        &mut self,
        calls: Vec<Resource<CallResource>>,
        timeout_ms: Option<u32>,
    ) -> Result<Option<(u32, MediaUpdate)>> {
        let handles = calls.iter().map(|call| self.handle(call)).collect::<Result<Vec<_>>>()?;
        if handles.is_empty() {
            return Ok(None);
        }
        for handle in &handles {
            self.calls.decline_unhandled_refers(*handle).await?;
        }
        let deadline = timeout_ms.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms.into()));
        let found = self.calls.wait_any_with(&handles, deadline, next_media_update).await?;
        Ok(found.map(|(index, update)| (index as u32, update)))
    }
}

impl media::HostPlayback for MediaView<'_> {
    async fn id(&mut self, playback: Resource<PlaybackResource>) -> Result<u64> {
        Ok(self.table.get(&playback)?.id.0)
    }

    async fn stop(&mut self, playback: Resource<PlaybackResource>) -> Result<()> {
        let PlaybackResource { call, id } = *self.table.get(&playback)?;
        if let Some(media) = self.calls.legs.get(&call).and_then(|leg| leg.media.as_ref()) {
            media.stop_playback(id);
        }
        Ok(())
    }

    async fn drop(&mut self, playback: Resource<PlaybackResource>) -> Result<()> {
        self.table.delete(playback)?;
        Ok(())
    }
}

impl media::HostRecording for MediaView<'_> {
    async fn id(&mut self, recording: Resource<RecordingResource>) -> Result<String> {
        Ok(self.table.get(&recording)?.name.clone())
    }

    async fn url(&mut self, recording: Resource<RecordingResource>) -> Result<Option<String>> {
        let name = &self.table.get(&recording)?.name;
        Ok(self.media.store.as_ref().and_then(|store| store.recording_url(name)))
    }

    async fn stop(&mut self, recording: Resource<RecordingResource>) -> Result<()> {
        let RecordingResource { call, id, .. } = *self.table.get(&recording)?;
        if let Some(media) = self.calls.legs.get(&call).and_then(|leg| leg.media.as_ref()) {
            media.stop_recording(id);
        }
        Ok(())
    }

    async fn drop(&mut self, recording: Resource<RecordingResource>) -> Result<()> {
        self.table.delete(recording)?;
        Ok(())
    }
}

impl Calls {
    /// Sends `steps` as SIP INFO (application/dtmf-relay), one at a time, each after the last one's final
    /// response (for a far end that offered no telephone-event); then reports `digits-sent`.
    async fn send_digits_as_info(
        &mut self,
        handle: CallHandle,
        steps: &[DigitStep],
        press: Duration,
    ) -> Result<Result<(), WitMediaError>> {
        for step in steps {
            let key = match step {
                DigitStep::Key(key) => *key,
                DigitStep::Pause(pause) => {
                    tokio::time::sleep(*pause).await;
                    continue;
                }
            };
            let body = format!("Signal={key}\r\nDuration={}\r\n", press.as_millis());
            let extras = Extras::body("application/dtmf-relay", body.into_bytes());
            let request = InDialogRequest { method: Method::Info, extras, credentials: None };
            let sent = match self.sip.send_request(handle, request).await {
                Ok(sent) => sent,
                Err(_) => return Ok(Err(WitMediaError::CallEnded)),
            };
            // One at a time: the next after this one's final response.
            self.final_response(handle, sent).await?;
        }
        self.leg(handle)?.push_media_event(MediaEvent::DigitsSent(callwright_media::DigitsId(0)));
        Ok(Ok(()))
    }
}

/// The next thing `media.wait` reports about `leg`: its SIP events first, then its media's. An INFO whose
/// digit went to the media session is answered by the host, not shown.
fn next_media_update(leg: &mut Leg) -> Next<MediaUpdate> {
    while let Some(event) = leg.backlog.pop_front() {
        if let Event::Request { handle, .. } = &event
            && leg.digit_infos.remove(handle)
        {
            return Next::AnswerOk(*handle);
        }
        if let Some(update) = to_guest_update(leg, event) {
            return Next::Update(MediaUpdate::Call(update));
        }
    }
    while let Some(event) = leg.media_events.pop_front() {
        if let Some(update) = media_update(leg, event) {
            return Next::Update(update);
        }
    }
    match leg_end_reason(leg) {
        // An ended call keeps answering `ended`, so a guest looping on updates cannot hang.
        Some(reason) => Next::Update(MediaUpdate::Call(CallUpdate::Event(CallEvent::Ended(reason)))),
        None => Next::Nothing,
    }
}

fn media_update(leg: &mut Leg, event: MediaEvent) -> Option<MediaUpdate> {
    Some(match event {
        MediaEvent::Digit(digit) => MediaUpdate::Digit(WitDigit {
            key: digit.key.to_string(),
            duration_ms: digit.duration.as_millis().min(u128::from(u32::MAX)) as u32,
            source: match digit.source {
                DigitSource::Rfc4733 => WitDigitSource::RtpEvent,
                DigitSource::SipInfo => WitDigitSource::SipInfo,
                DigitSource::InBand => WitDigitSource::InBand,
            },
        }),
        MediaEvent::PlaybackEnded { id, reason, played } => MediaUpdate::PlaybackEnded(PlaybackEnded {
            id: id.0,
            reason: match reason {
                PlaybackEnd::Completed => WitPlaybackEnd::Completed,
                PlaybackEnd::Stopped => WitPlaybackEnd::Stopped,
                PlaybackEnd::BargedIn => WitPlaybackEnd::BargedIn,
            },
            played_ms: played.as_millis().min(u128::from(u32::MAX)) as u32,
        }),
        MediaEvent::DigitsSent(_) => MediaUpdate::DigitsSent,
        MediaEvent::RecordingEnded { id, reason, duration } => MediaUpdate::RecordingEnded(RecordingEnded {
            id: leg.media.as_mut().and_then(|media| media.take_recording_name(id)).unwrap_or_default(),
            reason: match reason {
                RecordingEnd::MaxLength => WitRecordingEnd::MaxLength,
                RecordingEnd::Silence => WitRecordingEnd::Silence,
                RecordingEnd::NoInput => WitRecordingEnd::NoInput,
                RecordingEnd::Key(key) => WitRecordingEnd::Key(key.to_string()),
                RecordingEnd::Stopped => WitRecordingEnd::Stopped,
            },
            duration_ms: duration.as_millis().min(u128::from(u32::MAX)) as u32,
        }),
        _ => return None,
    })
}
