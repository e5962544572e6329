//! Errors the endpoint returns to its user for commands it cannot carry out.

use std::fmt;

use crate::endpoint::{CallHandle, IncomingRequestHandle};

/// A command the endpoint refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No such call (never existed, or ended and forgotten).
    UnknownCall(CallHandle),
    /// No such incoming request awaiting an answer.
    UnknownRequest(IncomingRequestHandle),
    /// The call has ended (it is still known, for late requests, but takes no commands).
    CallEnded {
        /// The call.
        call: CallHandle,
        /// What was asked.
        operation: &'static str,
    },
    /// The call is not in a state where the command makes sense (it has not ended).
    InvalidState {
        /// The call.
        call: CallHandle,
        /// What was asked.
        operation: &'static str,
        /// The state it is in.
        state: &'static str,
    },
    /// An argument is malformed (a status code out of range, a header that may not be set, …).
    BadArgument(String),
    /// No address to send to: the target names a host that is not an IP literal, and there is no flow to
    /// fall back to (the core does no DNS).
    NoRoute(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownCall(call) => write!(f, "no call {call}"),
            Error::UnknownRequest(request) => write!(f, "no pending request {request}"),
            Error::CallEnded { call, operation } => write!(f, "cannot {operation} {call}: the call has ended"),
            Error::InvalidState { call, operation, state } => write!(f, "cannot {operation} {call}: call is {state}"),
            Error::BadArgument(why) => write!(f, "bad argument: {why}"),
            Error::NoRoute(why) => write!(f, "no route: {why}"),
        }
    }
}

impl std::error::Error for Error {}
