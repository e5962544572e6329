//! The state one guest instance runs with (the wasmtime `Store` data), built in one place from the
//! capability units' parts; the SIP call legs it holds; the CPU meter.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callwright_driver::{CommandError, SipHandle};
use callwright_sip::{CallHandle, EndReason, Event, Extras, IncomingRequestHandle, RequestHandle};
use tokio::sync::mpsc;
use tracing::info;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::{CallError, CallInfo};
use crate::capabilities::call_control::CallControl;
use crate::capabilities::dispatch::{Dispatch, VerbDispatch};
use crate::capabilities::hooks::Hooks;
use crate::capabilities::log_clock::{GuestLog, LogClock};
use crate::capabilities::media::{GuestMedia, Media};
use crate::capabilities::variables::{CallVariables, VariableAccess};
use crate::capabilities::{CallSetup, Calls, Capability};
use crate::hooks::CallHooks;
use crate::limits::SandboxLimits;
use crate::media::{CallMedia, PendingOffer};
use crate::memory_budget::CallMemory;
use crate::refer::ReferProgress;
use callwright_media::MediaEvent;

/// Tells the call router where a new outbound call's events go (sent from the SIP driver's task when the
/// call is created, before its first event).
pub(crate) type Registrar = mpsc::UnboundedSender<Registration>;

/// An outbound call and where its events go.
pub(crate) type Registration = (CallHandle, mpsc::Sender<Event>);

/// The host side of a guest's `refer` resource: a REFER sent on a call.
#[derive(Debug)]
pub struct ReferResource {
    pub(crate) call: CallHandle,
    pub(crate) request: RequestHandle,
}

/// An inbound REFER waiting for the guest's decision.
#[derive(Debug, Clone)]
pub(crate) struct PendingRefer {
    pub(crate) refer_to: String,
    pub(crate) referred_by: Option<String>,
}

/// The host side of a guest's `call` resource: which SIP call it names.
#[derive(Debug)]
pub struct CallResource {
    pub(crate) handle: CallHandle,
}

/// One SIP call the guest holds, with the events routed to it.
pub(crate) struct Leg {
    pub(crate) info: CallInfo,
    /// Our address on the call's flow (for the SDP answer the host makes).
    pub(crate) local_ip: std::net::IpAddr,
    pub(crate) events: mpsc::Receiver<Event>,
    /// Events read while waiting for something else (e.g. a response), delivered by `next-event` first.
    pub(crate) backlog: VecDeque<Event>,
    pub(crate) ended: Option<EndReason>,
    pub(crate) answered: bool,
    /// An outbound call not answered yet: when the host gives up on it (CANCEL).
    pub(crate) ring_deadline: Option<tokio::time::Instant>,
    /// The host cancelled it because nobody answered in time: it ends as `failed(408)`.
    pub(crate) timed_out: bool,
    /// Requests from the far end the guest has not answered yet.
    pub(crate) unanswered: HashSet<IncomingRequestHandle>,
    /// Inbound REFERs handed to the guest and not decided yet.
    pub(crate) inbound_refers: HashMap<IncomingRequestHandle, PendingRefer>,
    /// Inbound REFERs delivered by the last `next-event`: still unanswered at the next one, they get 501.
    pub(crate) refers_delivered: Vec<IncomingRequestHandle>,
    /// REFERs we sent, by request.
    pub(crate) refers: HashMap<RequestHandle, ReferProgress>,
    /// Requests we sent whose responses nobody waits for (our NOTIFYs about an inbound REFER).
    pub(crate) unawaited: HashSet<RequestHandle>,
    /// The call's media once the offer/answer is done; ended (RTCP BYE, sockets closed) with the call.
    pub(crate) media: Option<CallMedia>,
    /// Our SDP offer, until its answer comes (in the 200 of an outbound call, the ACK of a delayed offer).
    pub(crate) pending_offer: Option<PendingOffer>,
    /// What the media reported and `media.wait` has not handed over yet (digits, playback ends), oldest
    /// first, at most [`MEDIA_EVENTS_KEPT`].
    pub(crate) media_events: VecDeque<MediaEvent>,
    /// INFOs whose digit went to the media session: `media.wait` answers them itself.
    pub(crate) digit_infos: HashSet<IncomingRequestHandle>,
}

/// Media events a call keeps for a guest that does not read them (one built before the media interface,
/// or busy); older ones are dropped first.
const MEDIA_EVENTS_KEPT: usize = 256;

impl Leg {
    pub(crate) fn new(info: CallInfo, local_ip: std::net::IpAddr, events: mpsc::Receiver<Event>) -> Leg {
        Leg {
            info,
            local_ip,
            events,
            backlog: VecDeque::new(),
            ended: None,
            answered: false,
            ring_deadline: None,
            timed_out: false,
            unanswered: HashSet::new(),
            inbound_refers: HashMap::new(),
            refers_delivered: Vec::new(),
            refers: HashMap::new(),
            unawaited: HashSet::new(),
            media: None,
            pending_offer: None,
            media_events: VecDeque::new(),
            digit_infos: HashSet::new(),
        }
    }

    /// Keeps a media event for `media.wait`: digits, playback and recording ends, digits sent (the rest is
    /// the host's).
    pub(crate) fn push_media_event(&mut self, event: MediaEvent) {
        if !matches!(
            event,
            MediaEvent::Digit(_)
                | MediaEvent::PlaybackEnded { .. }
                | MediaEvent::DigitsSent(_)
                | MediaEvent::RecordingEnded { .. }
        ) {
            return;
        }
        if self.media_events.len() == MEDIA_EVENTS_KEPT {
            self.media_events.pop_front();
        }
        self.media_events.push_back(event);
    }

    /// Takes one SIP event of this call: the progress of our REFERs goes to them, responses nobody awaits
    /// are dropped, and the rest waits in the backlog for whoever reads the call's events.
    pub(crate) fn absorb(&mut self, event: Event) {
        match event {
            Event::Response { request, response, .. } if self.refers.contains_key(&request) => {
                if let Some(progress) = self.refers.get_mut(&request) {
                    progress.on_response(tokio::time::Instant::now(), &response);
                }
            }
            Event::ReferNotify { refer, status, terminated, .. } => {
                if let Some(progress) = self.refers.get_mut(&refer) {
                    progress.on_notify(status, terminated);
                }
            }
            Event::Response { request, .. } if self.unawaited.remove(&request) => {}
            Event::Request { handle, ref request, .. } if request.method == callwright_sip::message::Method::Info => {
                // A digit by INFO joins the media's digit stream (reported once with its RFC 4733 twin).
                if let (Some(media), Some(digit)) = (&self.media, crate::media::info_digit(request)) {
                    media.info_digit(digit);
                    self.digit_infos.insert(handle);
                }
                self.backlog.push_back(event);
            }
            Event::CallEnded { ref reason, .. } => {
                self.ended = Some(reason.clone());
                self.media = None;
                self.pending_offer = None;
                for progress in self.refers.values_mut() {
                    progress.on_call_ended();
                }
                self.backlog.push_back(event);
            }
            other => self.backlog.push_back(other),
        }
    }

    /// Waits for the call's next SIP event until `deadline` and absorbs it. False when the time ran out.
    pub(crate) async fn receive(&mut self, deadline: Option<tokio::time::Instant>) -> bool {
        receive_any(&mut [self], deadline).await
    }
}

/// Waits for the next SIP event of any of `legs` until `until`, and absorbs it into its leg. False when
/// the time ran out.
pub(crate) async fn receive_any(legs: &mut [&mut Leg], until: Option<tokio::time::Instant>) -> bool {
    let received = std::future::poll_fn(|context| {
        for (index, leg) in legs.iter_mut().enumerate() {
            if let std::task::Poll::Ready(event) = leg.events.poll_recv(context) {
                return std::task::Poll::Ready((index, Received::Sip(event)));
            }
            if let Some(media) = leg.media.as_mut()
                && let std::task::Poll::Ready(event) = media.poll_event(context)
            {
                return std::task::Poll::Ready((index, Received::Media(event)));
            }
        }
        std::task::Poll::Pending
    });
    let (index, received) = match until {
        Some(at) => match tokio::time::timeout_at(at, received).await {
            Ok(received) => received,
            Err(_) => return false,
        },
        None => received.await,
    };
    match received {
        Received::Sip(event) => {
            // No sender left: the router let go of the call, so it is over.
            let event = event.unwrap_or(Event::CallEnded { call: CallHandle(0), reason: EndReason::LocalHangup });
            legs[index].absorb(event);
        }
        Received::Media(event) => legs[index].push_media_event(event),
    }
    true
}

/// What [`receive_any`] got: a SIP event (none: the router let go), or one of the media's. It lives for
/// one receive, on the stack: boxing the SIP event would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Received {
    Sip(Option<Event>),
    Media(MediaEvent),
}

/// Per-call variables, shared by every module that runs on the call.
pub type Variables = Arc<Mutex<VariableStore>>;

/// A call's variables, with the bytes they take counted against the host buffer limit.
#[derive(Debug, Default)]
pub struct VariableStore {
    values: BTreeMap<String, String>,
    bytes: usize,
}

impl VariableStore {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&String> {
        self.values.get(name)
    }

    /// Sets `name` unless the variables would then take more than `limit` bytes; the error says how much.
    pub fn set(&mut self, name: String, value: String, limit: usize) -> Result<(), String> {
        let old = self.values.get(&name).map_or(0, |old| name.len() + old.len());
        let bytes = self.bytes - old + name.len() + value.len();
        if bytes > limit {
            return Err(format!(
                "setting variable {:?} would make the call's variables {bytes} bytes, over the host buffer limit of {limit} bytes",
                truncated(&name)
            ));
        }
        self.bytes = bytes;
        self.values.insert(name, value);
        Ok(())
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        if let Some(value) = self.values.remove(name) {
            self.bytes -= name.len() + value.len();
        }
    }

    /// Every variable, by name.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &String)> {
        self.values.iter()
    }

    /// Bytes the names and values take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// At most 64 characters of `text`, for error messages.
fn truncated(text: &str) -> &str {
    text.char_indices().nth(64).map_or(text, |(end, _)| &text[..end])
}

/// Measures the guest's own execution: the time between entering wasm (a call into the guest, or the
/// return from a host import) and leaving it (a call to a host import, or the guest's return), from
/// wasmtime's call hooks. Time suspended in the host (waiting for SIP, a hook, a timer) never counts.
/// Time the guest's thread was preempted while in wasm does: it is wall time, not the thread's CPU
/// time (a guest's fiber may move between threads at every yield).
#[derive(Debug)]
pub(crate) struct CpuMeter {
    /// Execution charged so far, to this call (a verb's meter starts where its caller's stands).
    pub(crate) used: Duration,
    pub(crate) budget: Duration,
    /// Since when the guest has been running, while it runs.
    running_since: Option<Instant>,
}

impl CpuMeter {
    pub(crate) fn new(budget: Duration) -> CpuMeter {
        CpuMeter { used: Duration::ZERO, budget, running_since: None }
    }

    /// A meter that goes on from `used` of `budget` (a verb run for a call that already used some).
    pub(crate) fn continuing(used: Duration, budget: Duration) -> CpuMeter {
        CpuMeter { used, budget, running_since: None }
    }

    /// The guest enters wasm.
    pub(crate) fn resume(&mut self) {
        self.running_since.get_or_insert_with(Instant::now);
    }

    /// The guest leaves wasm.
    pub(crate) fn pause(&mut self) {
        if let Some(since) = self.running_since.take() {
            self.used += since.elapsed();
        }
    }

    /// Charges the execution up to now; false when the budget is spent (checked at every epoch tick).
    pub(crate) fn within_budget(&mut self) -> bool {
        if let Some(since) = self.running_since.replace(Instant::now()) {
            self.used += since.elapsed();
        }
        self.used <= self.budget
    }
}

/// The data of one guest instance's store: what wasmtime needs (the resource table, WASI that grants
/// nothing, the memory limiter, the CPU meter) and each capability unit's part (see
/// [`crate::capabilities`]).
pub struct CallState {
    pub(crate) table: ResourceTable,
    wasi: WasiCtx,
    /// This instance's share of the call's memory budget (the store's limiter).
    pub(crate) memory: CallMemory,
    pub(crate) cpu: CpuMeter,
    pub(crate) calls: Calls,
    pub(crate) hooks: CallHooks,
    pub(crate) variables: VariableAccess,
    pub(crate) verbs: VerbDispatch,
    pub(crate) log: GuestLog,
    pub(crate) media: GuestMedia,
}

impl CallState {
    /// The state of a call's flow: every unit builds its part from `setup`. The one place a guest's
    /// state is made; a verb's comes from its caller's ([`CallState::for_verb`]).
    pub(crate) fn new(setup: &CallSetup<'_>) -> CallState {
        CallState {
            table: ResourceTable::new(),
            // No preopened dirs, no env, no args, no sockets, no inherited stdio: a WASI guest sees nothing.
            wasi: WasiCtxBuilder::new().build(),
            memory: CallMemory::new(setup.limits.memory_per_call),
            cpu: CpuMeter::new(setup.limits.cpu_per_call),
            calls: CallControl::state(setup),
            hooks: Hooks::state(setup),
            variables: CallVariables::state(setup),
            verbs: Dispatch::state(setup),
            log: LogClock::state(setup),
            media: Media::state(setup),
        }
    }

    /// The state of a verb the guest holding `caller` runs, named `label` in logs: every unit lends its
    /// part (the calls move over, the hooks' queue too; variables and the memory budget are shared; the
    /// CPU meter goes on from where the caller's stands). [`CallState::give_back`] returns them.
    pub(crate) fn for_verb(caller: &mut CallState, label: &str) -> CallState {
        CallState {
            table: ResourceTable::new(),
            wasi: WasiCtxBuilder::new().build(),
            memory: caller.memory.share(),
            cpu: CpuMeter::continuing(caller.cpu.used, caller.cpu.budget),
            calls: CallControl::lend(&mut caller.calls, label),
            hooks: Hooks::lend(&mut caller.hooks, label),
            variables: CallVariables::lend(&mut caller.variables, label),
            verbs: Dispatch::lend(&mut caller.verbs, label),
            log: LogClock::lend(&mut caller.log, label),
            media: Media::lend(&mut caller.media, label),
        }
    }

    /// Takes back what [`CallState::for_verb`] lent, once the verb returned.
    pub(crate) fn give_back(&mut self, verb: CallState) {
        self.cpu.used = verb.cpu.used;
        CallControl::give_back(&mut self.calls, verb.calls);
        Hooks::give_back(&mut self.hooks, verb.hooks);
        CallVariables::give_back(&mut self.variables, verb.variables);
        Dispatch::give_back(&mut self.verbs, verb.verbs);
        LogClock::give_back(&mut self.log, verb.log);
        Media::give_back(&mut self.media, verb.media);
    }

    /// State for running guest code outside any call: SIP commands fail, hooks are refused, and
    /// outbound calls go nowhere.
    pub(crate) fn detached(limits: &SandboxLimits) -> CallState {
        let (registrar, _) = mpsc::unbounded_channel();
        CallState::new(&CallSetup {
            limits,
            sip: SipHandle::detached(),
            label: "detached".into(),
            app: String::new(),
            registrar,
            hook_client: reqwest::Client::new(),
            hooks: Default::default(),
            codecs: callwright_media::Codec::ALL.to_vec(),
            recording_hook: None,
            verbs: None,
            media: None,
        })
    }

    /// Hands the guest a call it is to handle.
    pub(crate) fn add_leg(
        &mut self,
        handle: CallHandle,
        info: CallInfo,
        local_ip: std::net::IpAddr,
        events: mpsc::Receiver<Event>,
    ) {
        self.calls.legs.insert(handle, Leg::new(info, local_ip, events));
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A SIP command's result as the guest sees it: a refusal becomes a `call-error`, a stopped driver a trap.
pub(crate) fn guest_result<T>(result: Result<T, CommandError>) -> wasmtime::Result<Result<T, CallError>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => call_error(error).map(Err),
    }
}

/// Maps a refused SIP command to what the guest sees; a stopped driver is a host failure (trap).
pub(crate) fn call_error(error: CommandError) -> wasmtime::Result<CallError> {
    use callwright_sip::Error;
    match error {
        CommandError::Stopped => Err(wasmtime::Error::msg("the SIP driver stopped")),
        CommandError::Sip(Error::UnknownCall(_) | Error::UnknownRequest(_)) => Ok(CallError::CallEnded),
        CommandError::Sip(Error::CallEnded { .. }) => Ok(CallError::CallEnded),
        CommandError::Sip(error @ Error::InvalidState { .. }) => Ok(CallError::InvalidState(error.to_string())),
        CommandError::Sip(error @ Error::BadArgument(_)) => Ok(CallError::InvalidArgument(error.to_string())),
        CommandError::Sip(error) => Ok(CallError::Other(error.to_string())),
    }
}

/// Ends whatever a guest left open on its calls: unanswered requests get 500 (REFERs 501: nobody handles
/// them); calls not answered get 500 (the guest failed) or 480; answered calls get BYE.
pub(crate) async fn finish_legs(sip: &SipHandle, legs: impl IntoIterator<Item = (CallHandle, Leg)>, failed: bool) {
    for (handle, leg) in legs {
        for request in leg.unanswered {
            let status = if leg.inbound_refers.contains_key(&request) { 501 } else { 500 };
            let _ = sip.respond(request, status, Extras::default()).await;
        }
        if leg.ended.is_some() {
            continue;
        }
        let result = if leg.answered {
            sip.hangup(handle).await
        } else {
            let status = if failed { 500 } else { 480 };
            match sip.reject(handle, status, None, Extras::default()).await {
                Ok(()) => Ok(()),
                // Answered some other way, or already over: hang up is the safe end.
                Err(_) => sip.hangup(handle).await,
            }
        };
        if let Err(error) = result {
            info!(call = %handle, %error, "call already over at teardown");
        }
    }
}

#[cfg(test)]
mod variable_tests {
    use super::VariableStore;

    #[test]
    fn variables_are_counted_against_the_limit_on_set_replace_and_remove() {
        let mut store = VariableStore::default();
        store.set("a".into(), "12345".into(), 10).unwrap();
        assert_eq!(store.bytes(), 6);
        // Replacing counts the new value, not both.
        store.set("a".into(), "123456789".into(), 10).unwrap();
        assert_eq!(store.bytes(), 10);
        let error = store.set("b".into(), "x".into(), 10).unwrap_err();
        assert!(error.contains("12 bytes, over the host buffer limit of 10 bytes"), "{error}");
        assert_eq!(store.get("b"), None, "a refused set changes nothing");
        assert_eq!(store.bytes(), 10);
        store.remove("a");
        assert_eq!(store.bytes(), 0);
        store.set("b".into(), "x".into(), 10).unwrap();
        assert_eq!(store.entries().count(), 1);
    }
}
