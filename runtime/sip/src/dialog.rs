//! Dialogs (RFC 3261 §12): the state two user agents share for one call, and building requests inside it.

use crate::message::{CSeq, Method, NameAddr, Request, Response, Uri};

/// Identifies a dialog from our side: Call-ID, our tag, the peer's tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

/// One dialog.
#[derive(Debug, Clone)]
pub struct Dialog {
    /// Call-ID and tags.
    pub id: DialogId,
    /// Our URI with our tag (the From of our requests).
    pub local: NameAddr,
    /// The peer's URI with its tag (the To of our requests).
    pub remote: NameAddr,
    /// The last CSeq we used.
    pub local_seq: u32,
    /// The highest CSeq the peer used, once it sent one.
    pub remote_seq: Option<u32>,
    /// Where requests go: the peer's Contact.
    pub remote_target: Uri,
    /// Route set, in the order our requests carry it.
    pub route_set: Vec<NameAddr>,
    /// Our Contact.
    pub local_contact: NameAddr,
}

/// Why a request in a dialog is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// In order.
    InOrder,
    /// Lower than or equal to one already seen (answer 500, RFC 3261 §12.2.2).
    OutOfOrder,
}

impl Dialog {
    /// The dialog a UAS creates when it answers `invite` with `local_tag` (§12.1.1).
    pub fn as_uas(invite: &Request, local_tag: &str, local_contact: NameAddr, local_seq: u32) -> Option<Dialog> {
        let mut local = invite.headers.name_addr("To").ok()?;
        local.params.set("tag", Some(local_tag));
        let remote = invite.headers.name_addr("From").ok()?;
        // RFC 2543 peers may omit Contact; they are reached at their From address.
        let remote_target = match invite.headers.name_addrs("Contact").ok()?.into_iter().next() {
            Some(contact) => contact.uri,
            None => remote.uri.clone(),
        };
        Some(Dialog {
            id: DialogId {
                call_id: invite.headers.call_id()?.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag: remote.tag().unwrap_or_default().to_string(),
            },
            local,
            remote,
            local_seq,
            remote_seq: invite.headers.cseq().ok().map(|c| c.seq),
            remote_target,
            route_set: invite.headers.name_addrs("Record-Route").ok()?,
            local_contact,
        })
    }

    /// The dialog a UAC creates from a 2xx to its `invite` (§12.1.2): the route set is Record-Route reversed.
    pub fn as_uac(invite: &Request, response: &Response, local_contact: NameAddr) -> Option<Dialog> {
        let local = invite.headers.name_addr("From").ok()?;
        let remote = response.headers.name_addr("To").ok()?;
        let remote_target = response.headers.name_addrs("Contact").ok()?.into_iter().next()?.uri;
        let mut route_set = response.headers.name_addrs("Record-Route").ok()?;
        route_set.reverse();
        Some(Dialog {
            id: DialogId {
                call_id: invite.headers.call_id()?.to_string(),
                local_tag: local.tag()?.to_string(),
                remote_tag: remote.tag().unwrap_or_default().to_string(),
            },
            local,
            remote,
            local_seq: invite.headers.cseq().ok()?.seq,
            remote_seq: None,
            remote_target,
            route_set,
            local_contact,
        })
    }

    /// Checks and records the CSeq of a request from the peer. ACK and CANCEL reuse their INVITE's number.
    pub fn check_remote_seq(&mut self, cseq: &CSeq) -> SequenceCheck {
        if matches!(cseq.method, Method::Ack | Method::Cancel) {
            return SequenceCheck::InOrder;
        }
        match self.remote_seq {
            Some(seen) if cseq.seq <= seen => SequenceCheck::OutOfOrder,
            _ => {
                self.remote_seq = Some(cseq.seq);
                SequenceCheck::InOrder
            }
        }
    }

    /// A new request in this dialog with the next CSeq (§12.2.1.1). Via and Content-Length are left to the
    /// caller. Loose routing only: a strict-routing first hop (no `lr`) is treated as loose.
    pub fn new_request(&mut self, method: Method) -> Request {
        self.local_seq += 1;
        let seq = self.local_seq;
        self.request_with_seq(method, seq)
    }

    /// A request in this dialog with a given CSeq number (ACK reuses its INVITE's).
    pub fn request_with_seq(&self, method: Method, seq: u32) -> Request {
        let mut request = Request::new(method.clone(), self.remote_target.clone());
        for route in &self.route_set {
            request.headers.push("Route", route.to_string());
        }
        request.headers.push("Max-Forwards", "70");
        request.headers.push("From", self.local.to_string());
        request.headers.push("To", self.remote.to_string());
        request.headers.push("Call-ID", self.id.call_id.clone());
        request.headers.push("CSeq", format!("{seq} {method}"));
        if !matches!(method, Method::Ack | Method::Cancel | Method::Bye) {
            request.headers.push("Contact", self.local_contact.to_string());
        }
        request
    }

    /// The URI the next hop is taken from: the first route if any, else the remote target.
    pub fn next_hop(&self) -> &Uri {
        self.route_set.first().map(|r| &r.uri).unwrap_or(&self.remote_target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn invite() -> Request {
        let text = "INVITE sip:bob@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\n\
            Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
            From: Alice <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\n\
            CSeq: 7 INVITE\r\nContact: <sip:alice@192.0.2.9:5070>\r\nContent-Length: 0\r\n\r\n";
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    #[test]
    fn uas_dialog_builds_requests_back_to_the_caller() {
        let contact = NameAddr::new(Uri::parse("sip:cw@192.0.2.1").unwrap());
        let mut dialog = Dialog::as_uas(&invite(), "b1", contact, 100).unwrap();
        let bye = dialog.new_request(Method::Bye);
        assert_eq!(bye.uri.to_string(), "sip:alice@192.0.2.9:5070");
        let routes: Vec<_> = bye.headers.get_all("Route").collect();
        assert_eq!(routes, ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]);
        assert_eq!(bye.headers.get("CSeq"), Some("101 BYE"));
        assert_eq!(bye.headers.tag("From").as_deref(), Some("b1"));
        assert_eq!(bye.headers.tag("To").as_deref(), Some("a1"));
    }

    #[test]
    fn remote_cseq_must_grow() {
        let contact = NameAddr::new(Uri::parse("sip:cw@192.0.2.1").unwrap());
        let mut dialog = Dialog::as_uas(&invite(), "b1", contact, 1).unwrap();
        let info = |seq| CSeq { seq, method: Method::Info };
        assert_eq!(dialog.check_remote_seq(&info(7)), SequenceCheck::OutOfOrder);
        assert_eq!(dialog.check_remote_seq(&info(8)), SequenceCheck::InOrder);
        assert_eq!(dialog.check_remote_seq(&info(8)), SequenceCheck::OutOfOrder);
    }
}
