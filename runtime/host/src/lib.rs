//! callwright-host: runs call logic as wasm components, one sandboxed instance per call.
//!
//! An inbound call is matched to an app ([`apps::AppStore::route`]); a fresh instance of the app's module
//! (from [`modules::ModuleStore`]) runs it under [`limits::SandboxLimits`]; the guest drives SIP through
//! the `callwright:voice` WIT imports, which the host implements over a [`callwright_driver::SipHandle`].
//! [`runtime::Runtime::route_events`] is the loop that connects the SIP driver's events to the guests.
#![deny(unsafe_code)]

pub mod apps;
pub mod bindings;
pub mod engine;
pub mod hooks;
pub mod limits;
pub mod media_store;
pub mod modules;
pub mod names;
pub mod recordings;
pub mod runtime;
pub mod schema;
pub mod verbs;

mod call_state;
mod capabilities;
mod imports;
mod media;
mod memory_budget;
mod refer;

pub use call_state::{CallState, VariableStore, Variables};
