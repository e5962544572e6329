//! The notifier side of a REFER's implicit subscription (RFC 3515 §2.4.4, RFC 6665 §4.2.2), the
//! counterpart of the subscriber side in the endpoint: after accepting a REFER, the endpoint reports how
//! its call to the target goes as NOTIFYs whose body is that call's status line (`message/sipfrag`).
//!
//! - `Event: refer` for the first REFER of a dialog, `Event: refer;id=<the REFER's CSeq>` for a later one
//!   (RFC 3515 §2.4.6), so the referrer can tell them apart.
//! - `Subscription-State: active;expires=<s>` while the status is provisional, then
//!   `terminated;reason=noresource` with the final status; nothing can be sent after it.
//! - A REFER with `Refer-Sub: false` (RFC 4488) that was accepted has no subscription: nothing is sent.
//! - A NOTIFY answered 481, or never answered (408), ends the subscription (RFC 6665 §4.2.2).

use crate::endpoint::{CallHandle, Extras, RequestHandle};
use crate::error::Error;
use crate::message::Request;

/// How long the subscription is said to last in each NOTIFY while the transfer goes on (RFC 3515 leaves
/// it to the notifier; the referrer may refresh it, which a transfer of a few seconds never needs).
pub const REFER_SUBSCRIPTION_EXPIRES_S: u32 = 60;

/// Where a REFER's subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The REFER waits for the user's answer.
    Pending,
    /// Accepted: NOTIFYs may be sent.
    Active,
    /// The final NOTIFY went out.
    Terminated,
}

/// The notifier of one inbound REFER's subscription.
#[derive(Debug)]
pub(crate) struct ReferNotifier {
    /// The call the REFER came in.
    pub(crate) call: CallHandle,
    /// The value of the Event header of its NOTIFYs.
    event: String,
    state: State,
    /// The NOTIFYs sent so far: a 481 or a timeout answering one ends the subscription.
    sent: Vec<RequestHandle>,
}

impl ReferNotifier {
    /// The notifier of `refer`, the REFER received in `call` after `earlier` others in its dialog; none
    /// when it asks for no subscription (`Refer-Sub: false`).
    pub(crate) fn for_refer(call: CallHandle, refer: &Request, earlier: u32) -> Option<ReferNotifier> {
        let no_subscription = refer.headers.get("Refer-Sub").is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
        if no_subscription {
            return None;
        }
        let event = match refer.headers.cseq() {
            Ok(cseq) if earlier > 0 => format!("refer;id={}", cseq.seq),
            _ => "refer".to_string(),
        };
        Some(ReferNotifier { call, event, state: State::Pending, sent: Vec::new() })
    }

    /// The user answered the REFER with `status`: a 2xx starts the subscription; anything else means
    /// there is none (false: forget the notifier).
    pub(crate) fn answered(&mut self, status: u16) -> bool {
        if (200..300).contains(&status) {
            self.state = State::Active;
            true
        } else {
            false
        }
    }

    /// The NOTIFY that reports `status` (the call to the target's status line): its headers and body. A
    /// final status (200 and up) ends the subscription. Refused before the REFER was accepted and after
    /// the final NOTIFY.
    pub(crate) fn notify(&mut self, status: u16, reason: &str) -> Result<Extras, Error> {
        match self.state {
            State::Pending => return Err(Error::BadArgument("the REFER has not been accepted".into())),
            State::Terminated => {
                return Err(Error::BadArgument("the REFER's subscription ended with its final NOTIFY".into()));
            }
            State::Active => {}
        }
        if !(100..700).contains(&status) {
            return Err(Error::BadArgument(format!("{status} is not a SIP status")));
        }
        let subscription_state = if status >= 200 {
            self.state = State::Terminated;
            "terminated;reason=noresource".to_string()
        } else {
            format!("active;expires={REFER_SUBSCRIPTION_EXPIRES_S}")
        };
        let reason = reason.replace(['\r', '\n'], " ");
        Ok(Extras::body("message/sipfrag;version=2.0", format!("SIP/2.0 {status} {reason}\r\n"))
            .header("Event", &self.event)
            .header("Subscription-State", &subscription_state))
    }

    /// `notify` is one of its NOTIFYs.
    pub(crate) fn sent_as(&mut self, notify: RequestHandle) {
        self.sent.push(notify);
    }

    /// Whether `notify` was one of its NOTIFYs.
    pub(crate) fn sent(&self, notify: RequestHandle) -> bool {
        self.sent.contains(&notify)
    }

    /// Whether the final NOTIFY went out (the notifier can be forgotten).
    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }
}
