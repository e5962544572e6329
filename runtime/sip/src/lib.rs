//! callwright-sip: a sans-IO SIP stack (RFC 3261 with RFC 6026, RFC 3515 REFER, RFC 4488, RFC 7616
//! digest).
//!
//! Nothing here does IO or reads a clock. Bytes and time go in; bytes to send, events, and the next
//! deadline come out. A driver (see the `callwright-driver` crate) owns the sockets and the timer.
//!
//! ```
//! use std::time::Instant;
//! use callwright_sip::{Endpoint, EndpointConfig, Event, Extras, Flow, Transport};
//!
//! let mut endpoint = Endpoint::new(EndpointConfig::default());
//! let flow = Flow {
//!     transport: Transport::Udp,
//!     local: "127.0.0.1:5060".parse().unwrap(),
//!     remote: "127.0.0.1:5070".parse().unwrap(),
//! };
//! let invite = "INVITE sip:1000@127.0.0.1 SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport\r\n\
//!     From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:1000@127.0.0.1>\r\nCall-ID: c1\r\n\
//!     CSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n";
//! let now = Instant::now();
//! endpoint.handle_message(now, flow, invite.as_bytes());
//! while let Some(event) = endpoint.poll_event() {
//!     if let Event::IncomingCall { call, .. } = event {
//!         endpoint.answer(now, call, Extras::default()).unwrap();
//!     }
//! }
//! let mut sent = Vec::new();
//! while let Some(transmit) = endpoint.poll_transmit() {
//!     sent.push(String::from_utf8(transmit.bytes).unwrap());
//! }
//! assert!(sent[0].starts_with("SIP/2.0 100 Trying"));
//! assert!(sent[1].starts_with("SIP/2.0 200 OK"));
//! // The 200 is retransmitted until the ACK arrives: the driver sleeps until this deadline.
//! assert!(endpoint.poll_timeout().is_some());
//! ```
#![forbid(unsafe_code)]

pub mod auth;
pub mod dialog;
pub mod endpoint;
pub mod error;
pub mod message;
pub mod refer_notifier;
pub mod timers;
pub mod transport;

mod rng;
mod transaction;

pub use endpoint::{
    CallHandle, Direction, EndReason, Endpoint, EndpointConfig, Event, Extras, InDialogRequest, IncomingRequestHandle,
    OfferAnswer, OfferAnswerer, OutboundCall, RequestHandle,
};
pub use error::Error;
pub use transport::{Flow, Transmit, Transport};
