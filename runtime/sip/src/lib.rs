//! callwright-sip: a sans-IO SIP stack (RFC 3261 with RFC 6026, 3515, 4488, 3891, 7616).
#![forbid(unsafe_code)]

// pub mod auth;
pub mod message;
