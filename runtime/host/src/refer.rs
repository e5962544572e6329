//! REFER (RFC 3515) as guests use it: building the request (target, Replaces for attended transfer) and
//! following its progress to exactly one outcome, whatever the far end does.
//!
//! [`ReferProgress`] is a plain state machine fed with what happened (response, NOTIFY, call ended, time);
//! the transfer unit (`capabilities/transfer.rs`) reads SIP events and asks it for the next [`ReferEvent`].

use std::collections::VecDeque;
use std::time::Duration;

use callwright_sip::dialog::Dialog;
use callwright_sip::message::{Response, Uri};
use tokio::time::Instant;

use crate::bindings::{ReferEvent, ReferOutcome, SipResponse};
use crate::capabilities::call_control::{body_of, headers_of};

/// How long a transfer may take after the REFER was accepted, unless the guest says otherwise (as jambonz).
pub(crate) const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(15);

/// Characters a bare number may hold; visual separators are dropped.
const NUMBER_CHARS: &str = "0123456789+*#";
const VISUAL_SEPARATORS: &str = "-.() ";

/// The Refer-To URI for a guest's target: a SIP or tel URI (angle brackets optional) passes through, a bare
/// number becomes `sip:<number>@<remote_host>`, and `user@host` becomes a SIP URI.
pub(crate) fn refer_to_uri(target: &str, remote_host: &str) -> Result<String, String> {
    let target = without_angle_brackets(target);
    if target.is_empty() {
        return Err("the transfer target is empty".into());
    }
    let lower = target.to_ascii_lowercase();
    let uri = if lower.starts_with("sip:") || lower.starts_with("sips:") || lower.starts_with("tel:") {
        target.to_string()
    } else if target.contains('@') {
        format!("sip:{target}")
    } else {
        let number: String = target.chars().filter(|c| !VISUAL_SEPARATORS.contains(*c)).collect();
        if number.is_empty() || !number.chars().all(|c| NUMBER_CHARS.contains(c)) {
            return Err(format!("the transfer target {target:?} is not a SIP or tel URI or a number"));
        }
        format!("sip:{number}@{remote_host}")
    };
    Uri::parse(&uri).map_err(|e| format!("the transfer target {uri:?} is not a valid URI: {e}"))?;
    Ok(uri)
}

/// A URI as guests may write it, `<sip:…>` or `sip:…`, without the brackets and surrounding space.
pub(crate) fn without_angle_brackets(text: &str) -> &str {
    let text = text.trim();
    text.strip_prefix('<').and_then(|t| t.strip_suffix('>')).unwrap_or(text).trim()
}

/// The Replaces value (RFC 3891) naming `dialog` as its far end sees it: the recipient of the INVITE with
/// Replaces is that far end, whose own tag is our remote tag.
pub(crate) fn replaces_value(dialog: &Dialog) -> String {
    format!("{};to-tag={};from-tag={}", dialog.id.call_id, dialog.id.remote_tag, dialog.id.local_tag)
}

/// `uri` with a Replaces header parameter (`?Replaces=<escaped>`), for Refer-To in an attended transfer.
pub(crate) fn with_replaces(uri: &str, replaces: &str) -> String {
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}Replaces={}", escape_header_value(replaces))
}

/// Escapes a URI header value (RFC 3261 `hvalue`): everything but unreserved characters is %-encoded.
fn escape_header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()[]/:+$".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Undoes %-escapes; invalid escapes are kept as written.
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An inbound REFER's Refer-To split into the URI to call and the Replaces value it carries, if any.
/// Other URI headers are dropped (RFC 3515 lets the referee ignore them).
pub(crate) fn split_refer_to(refer_to: &str) -> Result<(String, Option<String>), String> {
    let name_addr = callwright_sip::message::NameAddr::parse(refer_to)
        .map_err(|e| format!("Refer-To {refer_to:?} is not valid: {e}"))?;
    let mut uri = name_addr.uri;
    let mut replaces = None;
    if let Uri::Sip(sip) = &mut uri
        && let Some(headers) = sip.headers.take()
    {
        for pair in headers.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name.eq_ignore_ascii_case("Replaces") {
                replaces = Some(unescape(value));
            }
        }
    }
    Ok((uri.to_string(), replaces))
}

/// The progress of one REFER we sent.
#[derive(Debug)]
pub(crate) struct ReferProgress {
    /// Events the guest has not read yet, in order.
    pending: VecDeque<ReferEvent>,
    /// The final response's status, once it came.
    response: Option<u16>,
    /// The first final sipfrag status (≥ 200), once a NOTIFY carried one.
    final_notify: Option<u16>,
    /// Decided outcome; queued in `pending` once, then repeated.
    outcome: Option<ReferOutcome>,
    /// Whether the outcome was handed to the guest already.
    outcome_read: bool,
    timeout: Duration,
    /// When the transfer is given up (set once the REFER is accepted).
    deadline: Option<Instant>,
}

impl ReferProgress {
    pub(crate) fn new(timeout: Duration) -> ReferProgress {
        ReferProgress {
            pending: VecDeque::new(),
            response: None,
            final_notify: None,
            outcome: None,
            outcome_read: false,
            timeout,
            deadline: None,
        }
    }

    /// The final response to the REFER (a 408 made up by the transaction layer when none came).
    pub(crate) fn on_response(&mut self, now: Instant, response: &Response) {
        if self.response.is_some() {
            return;
        }
        let status = response.status;
        self.response = Some(status);
        self.pending.push_back(ReferEvent::Response(SipResponse {
            status,
            reason: response.reason.clone(),
            headers: headers_of(&response.headers),
            body: body_of(&response.headers, &response.body),
        }));
        let no_subscription =
            response.headers.get("Refer-Sub").is_some_and(|value| value.trim().eq_ignore_ascii_case("false"));
        match status {
            200..=299 if no_subscription => self.decide(ReferOutcome::Success(status)),
            200..=299 => match self.final_notify {
                // The final NOTIFY overtook the 202.
                Some(final_status) => self.decide(outcome_of_sipfrag(final_status)),
                None => self.deadline = Some(now + self.timeout),
            },
            401 | 407 => self.decide(ReferOutcome::AuthFailed),
            408 => self.decide(ReferOutcome::Timeout),
            _ => self.decide(ReferOutcome::Rejected(status)),
        }
    }

    /// A NOTIFY of this REFER's subscription (already answered 200 by the SIP core).
    pub(crate) fn on_notify(&mut self, status: Option<u16>, terminated: bool) {
        if self.outcome.is_some() {
            return;
        }
        if let Some(status) = status {
            self.pending.push_back(ReferEvent::Notify(status));
        }
        let final_status = match status {
            Some(status) if status >= 200 => status,
            // The subscription ended without a final status: the transfer did not complete (487 Request
            // Terminated stands for the missing status).
            _ if terminated => 487,
            _ => return,
        };
        self.final_notify.get_or_insert(final_status);
        // A NOTIFY may come before the 202; the outcome waits for the response to keep the event order.
        if matches!(self.response, Some(200..=299)) {
            self.decide(outcome_of_sipfrag(final_status));
        }
    }

    /// The call ended: a transfer without an outcome yet ends with `call-ended`.
    pub(crate) fn on_call_ended(&mut self) {
        self.decide(ReferOutcome::CallEnded);
    }

    /// Time passed; past the deadline the transfer ends with `timeout`.
    pub(crate) fn on_time(&mut self, now: Instant) {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            self.decide(ReferOutcome::Timeout);
        }
    }

    /// When [`ReferProgress::on_time`] should be called next.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.outcome.is_some() { None } else { self.deadline }
    }

    /// True once the outcome is known.
    #[cfg(test)]
    pub(crate) fn is_decided(&self) -> bool {
        self.outcome.is_some()
    }

    /// The next event for the guest: queued ones first; after the outcome, the outcome again.
    pub(crate) fn next_event(&mut self) -> Option<ReferEvent> {
        if let Some(event) = self.pending.pop_front() {
            if matches!(event, ReferEvent::Outcome(_)) {
                self.outcome_read = true;
            }
            return Some(event);
        }
        match &self.outcome {
            Some(outcome) if self.outcome_read => Some(ReferEvent::Outcome(*outcome)),
            _ => None,
        }
    }

    fn decide(&mut self, outcome: ReferOutcome) {
        if self.outcome.is_none() {
            self.pending.push_back(ReferEvent::Outcome(outcome));
            self.outcome = Some(outcome);
        }
    }
}

fn outcome_of_sipfrag(status: u16) -> ReferOutcome {
    if (200..300).contains(&status) { ReferOutcome::Success(status) } else { ReferOutcome::Failed(status) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callwright_sip::message::Headers;

    fn response(status: u16, extra: &[(&str, &str)]) -> Response {
        let mut headers = Headers::new();
        for (name, value) in extra {
            headers.push(name, *value);
        }
        Response { status, reason: "R".into(), headers, body: Vec::new() }
    }

    fn drain(progress: &mut ReferProgress) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(event) = progress.next_event() {
            let done = matches!(event, ReferEvent::Outcome(_));
            out.push(match event {
                ReferEvent::Response(r) => format!("response {}", r.status),
                ReferEvent::Notify(s) => format!("notify {s}"),
                ReferEvent::Outcome(o) => format!("outcome {o:?}").replace("ReferOutcome::", ""),
            });
            if done {
                break;
            }
        }
        out
    }

    #[test]
    fn targets_become_uris_as_jambonz_does() {
        assert_eq!(refer_to_uri("+1 (508) 555-0100", "10.0.0.1").unwrap(), "sip:+15085550100@10.0.0.1");
        assert_eq!(refer_to_uri("<sip:bob@example.com>", "x").unwrap(), "sip:bob@example.com");
        assert_eq!(refer_to_uri("tel:+15085550100", "x").unwrap(), "tel:+15085550100");
        assert_eq!(refer_to_uri("bob@example.com:5070", "x").unwrap(), "sip:bob@example.com:5070");
        assert!(refer_to_uri("bob", "x").unwrap_err().contains("not a SIP or tel URI"));
        assert!(refer_to_uri("  ", "x").is_err());
    }

    #[test]
    fn replaces_round_trips_through_refer_to() {
        let uri = with_replaces("sip:carol@10.0.0.3", "abc@host;to-tag=t1;from-tag=f1");
        assert_eq!(uri, "sip:carol@10.0.0.3?Replaces=abc%40host%3Bto-tag%3Dt1%3Bfrom-tag%3Df1");
        let (target, replaces) = split_refer_to(&format!("<{uri}>")).unwrap();
        assert_eq!(target, "sip:carol@10.0.0.3");
        assert_eq!(replaces.as_deref(), Some("abc@host;to-tag=t1;from-tag=f1"));
    }

    #[test]
    fn accepted_then_notified_ends_in_success() {
        let now = Instant::now();
        let mut progress = ReferProgress::new(DEFAULT_NOTIFY_TIMEOUT);
        progress.on_response(now, &response(202, &[]));
        progress.on_notify(Some(100), false);
        progress.on_notify(Some(200), true);
        assert_eq!(drain(&mut progress), ["response 202", "notify 100", "notify 200", "outcome Success(200)"]);
        // The outcome repeats.
        assert!(matches!(progress.next_event(), Some(ReferEvent::Outcome(ReferOutcome::Success(200)))));
    }

    #[test]
    fn a_notify_before_the_202_waits_for_it() {
        let now = Instant::now();
        let mut progress = ReferProgress::new(DEFAULT_NOTIFY_TIMEOUT);
        progress.on_notify(Some(486), true);
        assert!(!progress.is_decided());
        progress.on_response(now, &response(202, &[]));
        assert_eq!(drain(&mut progress), ["notify 486", "response 202", "outcome Failed(486)"]);
    }

    #[test]
    fn refusals_challenges_and_local_timeouts() {
        let now = Instant::now();
        for (status, expected) in [(403, "Rejected(403)"), (407, "AuthFailed"), (408, "Timeout")] {
            let mut progress = ReferProgress::new(DEFAULT_NOTIFY_TIMEOUT);
            progress.on_response(now, &response(status, &[]));
            assert_eq!(drain(&mut progress), [format!("response {status}"), format!("outcome {expected}")]);
        }
    }

    #[test]
    fn no_subscription_succeeds_on_the_202() {
        let mut progress = ReferProgress::new(DEFAULT_NOTIFY_TIMEOUT);
        progress.on_response(Instant::now(), &response(202, &[("Refer-Sub", "false")]));
        assert_eq!(drain(&mut progress), ["response 202", "outcome Success(202)"]);
        assert_eq!(progress.deadline(), None);
    }

    #[test]
    fn silence_after_the_202_times_out_and_a_hangup_ends_it() {
        let now = Instant::now();
        let mut progress = ReferProgress::new(Duration::from_secs(2));
        progress.on_response(now, &response(202, &[]));
        progress.on_time(now + Duration::from_secs(1));
        assert!(!progress.is_decided());
        progress.on_time(now + Duration::from_secs(2));
        assert_eq!(drain(&mut progress), ["response 202", "outcome Timeout"]);

        let mut progress = ReferProgress::new(Duration::from_secs(2));
        progress.on_response(now, &response(202, &[]));
        progress.on_call_ended();
        progress.on_notify(Some(200), true); // too late: the outcome is kept
        assert_eq!(drain(&mut progress), ["response 202", "outcome CallEnded"]);
    }

    #[test]
    fn a_subscription_ending_without_a_final_status_is_a_failure() {
        let mut progress = ReferProgress::new(DEFAULT_NOTIFY_TIMEOUT);
        progress.on_response(Instant::now(), &response(202, &[]));
        progress.on_notify(Some(100), true);
        assert_eq!(drain(&mut progress), ["response 202", "notify 100", "outcome Failed(487)"]);
    }
}
