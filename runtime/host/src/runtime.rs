//! The call router and runner: each inbound call is matched to an app, and a fresh instance of the app's
//! module runs it; SIP events for the call are routed to that instance.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callwright_driver::SipHandle;
use callwright_sip::message::Request;
use callwright_sip::{CallHandle, Event, Extras, Flow};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::apps::{AppDefinition, AppStore};
use crate::bindings::{CallInfo, Direction};
use crate::call_state::{CallResource, CallState, Registrar, Registration, finish_legs};
use crate::capabilities::CallSetup;
use crate::capabilities::call_control::{body_of, headers_of};
use crate::engine::HostEngine;
use crate::limits::SandboxLimits;
use crate::media_store::MediaStore;
use crate::modules::{LoadedModule, ModuleSet, ModuleStore};
use crate::verbs::VerbContext;

/// Events queued for one call's guest before the router starts refusing its far end's requests.
pub(crate) const EVENTS_PER_CALL: usize = 256;
/// Where the router sends one call's events, and how it tells the call's runner that the call ended.
struct LegRoute {
    events: mpsc::Sender<Event>,
    ended: Option<oneshot::Sender<()>>,
}

/// Retry-After (seconds) sent with 503 when the runtime is at its concurrency limit.
const RETRY_AFTER_SECS: &str = "5";
/// How long [`Runtime::shut_down`] waits for the calls it hung up to end.
pub const HANG_UP_WAIT: Duration = Duration::from_secs(5);
/// How often [`Runtime::shut_down`] checks whether calls are left.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Counts as `GET /v1/stats` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeStats {
    /// Calls with a guest.
    pub live_calls: usize,
    /// Calls the SIP endpoint holds (including ended ones lingering for late requests).
    pub sip_calls: usize,
    /// Live SIP transactions.
    pub sip_transactions: usize,
    /// Open SIP TCP connections.
    pub tcp_connections: usize,
    /// Whether new calls are refused with 503 because requests queue too long.
    pub shedding: bool,
    /// New calls refused so far because requests queued too long.
    pub calls_shed: u64,
    /// Whether a graceful shutdown has begun.
    pub shutting_down: bool,
}

/// A call as `GET /v1/calls` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct LiveCall {
    /// The runtime's call id.
    pub id: String,
    /// The SIP Call-ID.
    pub sip_call_id: String,
    /// The app handling it.
    pub app: String,
    /// The module running it.
    pub module: String,
    /// The From URI.
    pub from: String,
    /// The To URI.
    pub to: String,
    /// "ringing" until the caller acknowledges the answer, then "up".
    pub state: &'static str,
    /// When it arrived (seconds since the UNIX epoch).
    pub started_at: u64,
}

/// Everything a running server shares: engine, stores, SIP handle, and the live-call table.
pub struct Runtime {
    /// The wasm engine.
    pub engine: Arc<HostEngine>,
    /// Uploaded modules.
    pub modules: Arc<ModuleStore>,
    /// Apps.
    pub apps: Arc<AppStore>,
    /// Uploaded media, speech and the prompt cache.
    pub media: Arc<MediaStore>,
    sip: SipHandle,
    live: Mutex<BTreeMap<CallHandle, LiveCall>>,
    capacity: Arc<Semaphore>,
    /// Where guests register the outbound calls they place; the router reads the other end.
    registrar: Registrar,
    registrations: Mutex<Option<mpsc::UnboundedReceiver<Registration>>>,
    /// Shared by every call's hooks.
    hook_client: reqwest::Client,
    /// Set when shutdown begins: new calls get 503.
    draining: AtomicBool,
    /// Becomes true when the shutdown deadline passes: every guest still running is stopped and its call
    /// hung up.
    hang_up_all: watch::Sender<bool>,
}

impl Runtime {
    /// A runtime over the given parts.
    pub fn new(
        engine: Arc<HostEngine>,
        modules: Arc<ModuleStore>,
        apps: Arc<AppStore>,
        media: Arc<MediaStore>,
        sip: SipHandle,
    ) -> anyhow::Result<Arc<Runtime>> {
        let capacity = Arc::new(Semaphore::new(engine.limits.max_concurrent_calls));
        let (registrar, registrations) = mpsc::unbounded_channel();
        Ok(Arc::new(Runtime {
            engine,
            modules,
            apps,
            media,
            sip,
            live: Mutex::new(BTreeMap::new()),
            capacity,
            registrar,
            registrations: Mutex::new(Some(registrations)),
            hook_client: crate::hooks::http_client()?,
            draining: AtomicBool::new(false),
            hang_up_all: watch::Sender::new(false),
        }))
    }

    /// Creates a call's sandbox for `module` and instantiates it, without running it: what every call pays
    /// before its guest starts. For benchmarks (`runtime/cli/benches/instantiate.rs`).
    pub async fn instantiate_only(&self, module: &LoadedModule) -> anyhow::Result<()> {
        let state = CallState::new(&CallSetup {
            limits: &self.engine.limits,
            sip: self.sip.clone(),
            label: "bench".into(),
            app: String::new(),
            registrar: self.registrar.clone(),
            hook_client: self.hook_client.clone(),
            hooks: Default::default(),
            codecs: callwright_media::Codec::ALL.to_vec(),
            recording_hook: None,
            verbs: None,
            media: Some(self.media.clone()),
        });
        let mut store = self.engine.store(state);
        let pre = module.flow.as_ref().ok_or_else(|| anyhow::anyhow!("module is not a call flow"))?;
        pre.instantiate_async(&mut store).await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(())
    }

    /// Live calls, oldest first.
    pub fn live_calls(&self) -> Vec<LiveCall> {
        self.live.lock().expect("live calls lock").values().cloned().collect()
    }

    /// Counts for monitoring (`GET /v1/stats`).
    pub async fn stats(&self) -> RuntimeStats {
        let sip = self.sip.stats().await.unwrap_or_default();
        RuntimeStats {
            live_calls: self.live_count(),
            sip_calls: sip.calls,
            sip_transactions: sip.transactions,
            tcp_connections: sip.tcp_connections,
            shedding: sip.shedding,
            calls_shed: sip.calls_shed,
            shutting_down: self.draining.load(Ordering::SeqCst),
        }
    }

    /// Shuts down gracefully: from now on new calls get 503 with Retry-After; the calls in progress may
    /// finish until `grace` has passed, then the ones still live are hung up (BYE, or a final response when
    /// not answered yet). Returns once no call is left (or [`HANG_UP_WAIT`] after hanging up).
    pub async fn shut_down(&self, grace: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        info!(live = self.live_count(), ?grace, "shutting down: new calls get 503, live calls may finish");
        if !self.wait_until_idle(grace).await {
            warn!(live = self.live_count(), "shutdown deadline: hanging up the calls still live");
            self.hang_up_all.send_replace(true);
            if !self.wait_until_idle(HANG_UP_WAIT).await {
                warn!(live = self.live_count(), "calls still live after hanging up; stopping anyway");
                return;
            }
        }
        info!("no call left");
    }

    fn live_count(&self) -> usize {
        self.live.lock().expect("live calls lock").len()
    }

    /// Waits until no call is live, for at most `limit`; true if none is.
    async fn wait_until_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.live_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(IDLE_POLL).await;
        }
        true
    }

    /// Routes every SIP event until the driver stops. Call it once.
    pub async fn route_events(self: Arc<Self>, mut events: mpsc::Receiver<Event>) {
        let mut legs: HashMap<CallHandle, LegRoute> = HashMap::new();
        let mut registrations =
            self.registrations.lock().expect("registrations lock").take().expect("route_events runs once");
        while let Some(event) = events.recv().await {
            // An outbound call is registered before its first event is queued, so taking the registrations
            // queued by now never misses one.
            while let Ok((call, events)) = registrations.try_recv() {
                legs.insert(call, LegRoute { events, ended: None });
            }
            match event {
                Event::IncomingCall { call, request, flow } => self.start_call(call, request, flow, &mut legs),
                event => self.forward(event, &mut legs),
            }
        }
    }

    fn forward(&self, event: Event, legs: &mut HashMap<CallHandle, LegRoute>) {
        let call = match &event {
            Event::IncomingCall { call, .. }
            | Event::CallProgress { call, .. }
            | Event::CallAnswered { call, .. }
            | Event::CallConfirmed { call, .. }
            | Event::CallEnded { call, .. }
            | Event::Request { call, .. }
            | Event::Response { call, .. }
            | Event::ReferNotify { call, .. } => *call,
        };
        match &event {
            Event::CallConfirmed { .. } => {
                if let Some(live) = self.live.lock().expect("live calls lock").get_mut(&call) {
                    live.state = "up";
                }
            }
            Event::CallEnded { reason, .. } => {
                info!(%call, ?reason, "call ended");
                self.live.lock().expect("live calls lock").remove(&call);
            }
            _ => {}
        }
        let ended = matches!(event, Event::CallEnded { .. });
        let sender = if ended {
            let Some(mut route) = legs.remove(&call) else { return };
            if let Some(signal) = route.ended.take() {
                let _ = signal.send(());
            }
            route.events
        } else {
            let Some(route) = legs.get(&call) else { return };
            route.events.clone()
        };
        match sender.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => match event {
                // The guest is not reading its events: refuse the far end's requests rather than queue them.
                Event::Request { handle, .. } => {
                    let sip = self.sip.clone();
                    tokio::spawn(async move { sip.respond(handle, 503, Extras::default()).await });
                }
                // The end of a call must arrive; wait for room off the router's loop.
                ended @ Event::CallEnded { .. } => {
                    tokio::spawn(async move { sender.send(ended).await });
                }
                other => warn!(%call, ?other, "guest is not reading its call events; event dropped"),
            },
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn start_call(
        self: &Arc<Self>,
        call: CallHandle,
        request: Request,
        flow: Flow,
        legs: &mut HashMap<CallHandle, LegRoute>,
    ) {
        let to_user = request
            .headers
            .name_addr("To")
            .ok()
            .and_then(|to| to.uri.user().map(str::to_string))
            .or_else(|| request.uri.user().map(str::to_string))
            .unwrap_or_default();
        let Some((app_name, app)) = self.apps.route(&to_user) else {
            info!(%call, %to_user, "no app takes this call");
            return self.refuse(call, 404, "No app for this number");
        };
        // The call's modules: its flow, and the verbs it runs, all from the set loaded now.
        let modules = self.modules.snapshot();
        let Some(module) = modules.get(&app.flow.module) else {
            error!(%call, app = %app_name, module = %app.flow.module, "the app's module does not exist");
            return self.refuse(call, 500, "App module missing");
        };
        if self.draining.load(Ordering::SeqCst) {
            info!(%call, "shutting down: call refused");
            return self.refuse_busy(call);
        }
        let Ok(permit) = self.capacity.clone().try_acquire_owned() else {
            warn!(%call, "at the concurrent call limit");
            return self.refuse_busy(call);
        };
        let (sender, events) = mpsc::channel(EVENTS_PER_CALL);
        let (ended_signal, ended) = oneshot::channel();
        legs.insert(call, LegRoute { events: sender, ended: Some(ended_signal) });
        let info = call_info(call, &request, flow);
        self.live.lock().expect("live calls lock").insert(
            call,
            LiveCall {
                id: call.to_string(),
                sip_call_id: info.sip_call_id.clone(),
                app: app_name.clone(),
                module: app.flow.module.clone(),
                from: info.from.clone(),
                to: info.to.clone(),
                state: "ringing",
                started_at: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            },
        );
        info!(%call, app = %app_name, module = %app.flow.module, "call started");
        let runtime = self.clone();
        let local_ip = flow.local.ip();
        tokio::spawn(async move {
            runtime.run_call(call, (module, modules), (app_name, app), (info, local_ip), (events, ended), permit).await
        });
    }

    /// Refuses `call` with 503 and Retry-After: the caller may try again soon.
    fn refuse_busy(&self, call: CallHandle) {
        let sip = self.sip.clone();
        tokio::spawn(async move { sip.reject(call, 503, None, retry_later()).await });
    }

    fn refuse(&self, call: CallHandle, status: u16, reason: &'static str) {
        let sip = self.sip.clone();
        tokio::spawn(async move { sip.reject(call, status, Some(reason.to_string()), Extras::default()).await });
    }

    /// Runs one call in a fresh instance, then makes sure the call and its requests are finished.
    async fn run_call(
        self: Arc<Self>,
        call: CallHandle,
        (module, modules): (Arc<LoadedModule>, Arc<ModuleSet>),
        (app_name, mut app): (String, AppDefinition),
        (info, local_ip): (CallInfo, std::net::IpAddr),
        (events, ended): (mpsc::Receiver<Event>, oneshot::Receiver<()>),
        _permit: OwnedSemaphorePermit,
    ) {
        let limits = self.engine.limits.clone();
        let pinned = std::mem::take(&mut app.verbs);
        let state = CallState::new(&CallSetup {
            limits: &limits,
            sip: self.sip.clone(),
            label: call.to_string(),
            app: app_name,
            registrar: self.registrar.clone(),
            hook_client: self.hook_client.clone(),
            hooks: std::mem::take(&mut app.hooks),
            codecs: app.media.codecs(),
            recording_hook: app.media.recording_hook.take(),
            verbs: Some(Arc::new(VerbContext { engine: self.engine.clone(), modules, pinned })),
            media: Some(self.media.clone()),
        });
        let mut store = self.engine.store(state);
        store.data_mut().add_leg(call, info, local_ip, events);
        let config = app.flow.config.to_string();
        let started = Instant::now();
        let mut instantiated = false;
        let run = async {
            let pre = module.flow.as_ref().ok_or_else(|| wasmtime::Error::msg("module is not a call flow"))?;
            let instance = pre.instantiate_async(&mut store).await?;
            instantiated = true;
            let resource = store.data_mut().table.push(CallResource { handle: call })?;
            instance.callwright_voice_flow().call_handle(&mut store, resource, &config).await
        };
        let outcome = within_limits(run, &limits, ended, self.hang_up_all.subscribe()).await;
        let failed = match outcome {
            Ok(Ok(Ok(()))) => {
                info!(%call, elapsed = ?started.elapsed(), "guest finished");
                false
            }
            Ok(Ok(Err(message))) => {
                warn!(%call, %message, "guest returned an error");
                true
            }
            Ok(Err(error)) if !instantiated => {
                // No room for another instance (the pool or the machine's memory maps are exhausted): the
                // guest never ran, so the caller may try again later, as at the call limit.
                warn!(%call, error = %format!("{error:#}"), "no room for the call's instance: 503");
                let _ = self.sip.reject(call, 503, None, retry_later()).await;
                false
            }
            Ok(Err(trap)) => {
                error!(%call, error = %format!("{trap:#}"), "guest stopped");
                true
            }
            Err(limit) => {
                warn!(%call, %limit, "guest stopped: it ran past {limit}");
                false
            }
        };
        let state = store.into_data();
        finish_legs(&self.sip, state.calls.legs, failed).await;
    }
}

/// Runs a call's guest (`run`) within the limits of its time: the maximum call duration; the grace period
/// once its call ended (`ended` fires), as a guest may outlive its call only for post-call work, so one
/// sleeping or waiting after the caller left frees its instance and its permit; and the shutdown
/// deadline (`hang_up_all` turns true). The error names the limit it ran past.
async fn within_limits<T>(
    run: impl Future<Output = T>,
    limits: &SandboxLimits,
    ended: oneshot::Receiver<()>,
    mut hang_up_all: watch::Receiver<bool>,
) -> Result<T, &'static str> {
    let after_call = async {
        if ended.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(limits.after_call_grace).await;
    };
    let shutdown = async move {
        if hang_up_all.wait_for(|now| *now).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        outcome = tokio::time::timeout(limits.max_call_duration, run) => outcome.map_err(|_| "the maximum call duration"),
        () = after_call => Err("the grace period after the call ended"),
        () = shutdown => Err("the shutdown deadline"),
    }
}

/// The extras of a 503 that asks the caller to try again in [`RETRY_AFTER_SECS`].
fn retry_later() -> Extras {
    Extras::default().header("Retry-After", RETRY_AFTER_SECS)
}

fn user_of(value: Option<&str>) -> String {
    value
        .and_then(|v| callwright_sip::message::NameAddr::parse(v).ok())
        .and_then(|n| n.uri.user().map(str::to_string))
        .unwrap_or_default()
}

/// What the guest learns about a call from its INVITE.
fn call_info(call: CallHandle, request: &Request, flow: Flow) -> CallInfo {
    let headers = &request.headers;
    CallInfo {
        id: call.to_string(),
        sip_call_id: headers.call_id().unwrap_or_default().to_string(),
        from: headers.get("From").unwrap_or_default().to_string(),
        to: headers.get("To").unwrap_or_default().to_string(),
        to_user: user_of(headers.get("To")),
        from_user: user_of(headers.get("From")),
        direction: Direction::Inbound,
        request_uri: request.uri.to_string(),
        headers: headers_of(headers),
        body: body_of(headers, &request.body),
        remote_address: flow.remote.to_string(),
        transport: flow.transport.to_string().to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod time_limit_tests {
    use std::time::Duration;

    use tokio::sync::{oneshot, watch};
    use tokio::time::{Instant, sleep};

    use super::{SandboxLimits, within_limits};

    const FOREVER: Duration = Duration::from_secs(100 * 3600);

    /// A guest that runs for `duration`, its call ending after `ends_after`, the server shutting down after
    /// `shutdown_after`: what stopped it, and when (in virtual time).
    async fn run(
        duration: Duration,
        ends_after: Option<Duration>,
        shutdown_after: Option<Duration>,
    ) -> (Result<(), &'static str>, Duration) {
        let limits = SandboxLimits::default();
        let started = Instant::now();
        let (end, ended) = oneshot::channel();
        let (hang_up_all, hang_up_all_seen) = watch::channel(false);
        tokio::spawn(async move {
            match ends_after {
                Some(after) => {
                    sleep(after).await;
                    let _ = end.send(());
                }
                None => sleep(FOREVER).await,
            }
        });
        tokio::spawn(async move {
            if let Some(after) = shutdown_after {
                sleep(after).await;
                let _ = hang_up_all.send(true);
            }
            sleep(FOREVER).await;
        });
        let outcome = within_limits(sleep(duration), &limits, ended, hang_up_all_seen).await;
        (outcome, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_guest_stops_at_the_grace_after_its_call_the_maximum_duration_or_the_shutdown() {
        let secs = Duration::from_secs;
        // Done in time.
        assert_eq!(run(secs(2), Some(secs(5)), None).await, (Ok(()), secs(2)));
        // Post-call work within the grace period (30 s) is let finish.
        assert_eq!(run(secs(20), Some(secs(5)), None).await, (Ok(()), secs(20)));
        // Past it, stopped exactly at the end of the grace period.
        assert_eq!(run(FOREVER, Some(secs(5)), None).await, (Err("the grace period after the call ended"), secs(35)));
        // A call that never ends is stopped at the maximum call duration (4 h).
        assert_eq!(run(FOREVER, None, None).await, (Err("the maximum call duration"), secs(4 * 3600)));
        // The shutdown deadline stops it at once.
        assert_eq!(run(FOREVER, None, Some(secs(7))).await, (Err("the shutdown deadline"), secs(7)));
    }
}
