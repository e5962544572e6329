//! Transactions (RFC 3261 §17 as amended by RFC 6026): matching, and the four state machines.
//!
//! A transaction owns retransmission and timeout of one request/response exchange. It never decides what to
//! answer: the endpoint (the transaction user) does. Machines take `now` and push [`Transmit`]s; their
//! deadlines are read with `next_deadline` and fired with `handle_timeout`.

mod client;
mod server;

pub(crate) use client::{ClientState, ClientTimeout, ClientTransaction};
pub(crate) use server::{ServerState, ServerTimeout, ServerTransaction};

use crate::message::{Method, Request, Response};

/// Identifies a server transaction (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ServerKey {
    /// RFC 3261 peers: branch, sent-by and method (ACK matches its INVITE).
    Branch { branch: String, sent_by: String, method: Method },
    /// RFC 2543 peers (no magic cookie): the fields that identified a transaction then.
    Legacy { call_id: String, cseq: u32, from_tag: String, via: String, method: Method },
}

impl ServerKey {
    /// The key of the transaction `request` belongs to, or `None` when the request cannot be matched.
    pub(crate) fn for_request(request: &Request) -> Option<ServerKey> {
        let method = match request.method {
            Method::Ack => Method::Invite,
            ref other => other.clone(),
        };
        let via = request.headers.top_via().ok()?;
        if via.has_rfc3261_branch() {
            let sent_by = format!("{}:{}", via.host, via.port.unwrap_or(5060)).to_ascii_lowercase();
            return Some(ServerKey::Branch { branch: via.branch()?.to_string(), sent_by, method });
        }
        Some(ServerKey::Legacy {
            call_id: request.headers.call_id()?.to_string(),
            cseq: request.headers.cseq().ok()?.seq,
            from_tag: request.headers.tag("From").unwrap_or_default(),
            via: via.to_string(),
            method,
        })
    }

    /// The key of the INVITE transaction a CANCEL with this key targets.
    pub(crate) fn cancelled_invite(&self) -> ServerKey {
        let mut key = self.clone();
        match &mut key {
            ServerKey::Branch { method, .. } | ServerKey::Legacy { method, .. } => *method = Method::Invite,
        }
        key
    }
}

/// Identifies a client transaction (RFC 3261 §17.1.3): our branch and the CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    pub(crate) branch: String,
    pub(crate) method: Method,
}

impl ClientKey {
    /// The key a response belongs to.
    pub(crate) fn for_response(response: &Response) -> Option<ClientKey> {
        let via = response.headers.top_via().ok()?;
        let method = response.headers.cseq().ok()?.method;
        Some(ClientKey { branch: via.branch()?.to_string(), method })
    }
}
