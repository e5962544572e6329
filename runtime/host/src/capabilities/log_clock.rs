//! Log and clock: the guest's log lines (under the target `guest`, with the call's name, cut at
//! [`MAX_LOG_MESSAGE`]) and its time (`clock.sleep` suspends it in the host, which is not CPU).

use std::time::Duration;

use wasmtime::Result;
use wasmtime::component::{HasSelf, Linker};

use super::{CallSetup, Capability};
use crate::bindings::callwright::voice::{clock, log};
use crate::call_state::CallState;

/// The longest message a guest may log in one call; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 4096;

/// The log-and-clock unit.
pub(crate) struct LogClock;

/// Its state: the name of the call (or call and verb) in logs.
pub(crate) struct GuestLog {
    label: String,
}

impl Capability for LogClock {
    const INTERFACES: &'static [&'static str] = &["callwright:voice/log", "callwright:voice/clock"];
    type State = GuestLog;

    fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        log::add_to_linker::<CallState, HasSelf<GuestLog>>(linker, |state| &mut state.log)?;
        clock::add_to_linker::<CallState, HasSelf<GuestLog>>(linker, |state| &mut state.log)
    }

    fn state(setup: &CallSetup<'_>) -> GuestLog {
        GuestLog { label: setup.label.clone() }
    }

    fn lend(_caller: &mut GuestLog, label: &str) -> GuestLog {
        GuestLog { label: label.to_string() }
    }
}

impl log::Host for GuestLog {
    async fn log(&mut self, level: log::Level, mut message: String) -> Result<()> {
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let call = self.label.as_str();
        match level {
            log::Level::Trace => tracing::trace!(target: "guest", call, "{message}"),
            log::Level::Debug => tracing::debug!(target: "guest", call, "{message}"),
            log::Level::Info => tracing::info!(target: "guest", call, "{message}"),
            log::Level::Warn => tracing::warn!(target: "guest", call, "{message}"),
            log::Level::Error => tracing::error!(target: "guest", call, "{message}"),
        }
        Ok(())
    }
}

impl clock::Host for GuestLog {
    async fn sleep(&mut self, ms: u32) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(ms.into())).await;
        Ok(())
    }

    async fn now_ms(&mut self) -> Result<u64> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Ok(now.as_millis() as u64)
    }
}
