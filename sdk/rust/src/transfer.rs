//! What a transfer (REFER) came to, and how the peers' platforms report it: jambonz `sip:refer`'s hook
//! fields, SignalWire SWML `sip_refer`'s variables and status callback, Twilio `<Refer>`'s action
//! parameters. Built once here so every verb and flow reports transfers the same way.

use serde_json::{Map, Value, json};

use crate::{CallInfo, Direction, Refer, ReferEvent, ReferOutcome};

/// The call fields every jambonz webhook carries (snake_case, as jambonz sends them): `call_sid`, `call_id`,
/// `direction`, `from`, `to` (user parts), `sip_status` (the answer, 200) and `call_status`.
pub fn jambonz_call_fields(info: &CallInfo, call_status: &str) -> Map<String, Value> {
    let direction = match info.direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    };
    let mut fields = Map::new();
    fields.insert("call_sid".into(), json!(info.id));
    fields.insert("call_id".into(), json!(info.sip_call_id));
    fields.insert("direction".into(), json!(direction));
    fields.insert("from".into(), json!(info.from_user));
    fields.insert("to".into(), json!(info.to_user));
    fields.insert("sip_status".into(), json!(200));
    fields.insert("call_status".into(), json!(call_status));
    fields
}

/// Everything a finished transfer told us.
#[derive(Debug, Clone)]
pub struct ReferReport {
    /// The status of the REFER's final response, if one came.
    pub refer_status: Option<u16>,
    /// Each NOTIFY's sipfrag status, in order.
    pub notify_statuses: Vec<u16>,
    /// How it ended.
    pub outcome: ReferOutcome,
}

impl Refer {
    /// Follows the transfer to its outcome, calling `on_notify` with each NOTIFY's status as it comes.
    pub fn follow(&self, mut on_notify: impl FnMut(u16)) -> ReferReport {
        let mut refer_status = None;
        let mut notify_statuses = Vec::new();
        loop {
            match self.next_event() {
                ReferEvent::Response(response) => refer_status = Some(response.status),
                ReferEvent::Notify(status) => {
                    notify_statuses.push(status);
                    on_notify(status);
                }
                ReferEvent::Outcome(outcome) => return ReferReport { refer_status, notify_statuses, outcome },
            }
        }
    }
}

impl ReferReport {
    /// The final status of the transferee's call to the target, as a final NOTIFY reported it.
    pub fn final_notify_status(&self) -> Option<u16> {
        match self.outcome {
            ReferOutcome::Success(status) | ReferOutcome::Failed(status) if self.notify_statuses.contains(&status) => {
                Some(status)
            }
            _ => None,
        }
    }

    /// True when the transferee reached the target (or accepted a REFER without subscription).
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, ReferOutcome::Success(_))
    }

    /// The outcome's name: `success`, `failed`, `rejected`, `timeout`, `auth-failed` or `call-ended`.
    pub fn outcome_name(&self) -> &'static str {
        match self.outcome {
            ReferOutcome::Success(_) => "success",
            ReferOutcome::Failed(_) => "failed",
            ReferOutcome::Rejected(_) => "rejected",
            ReferOutcome::Timeout => "timeout",
            ReferOutcome::AuthFailed => "auth-failed",
            ReferOutcome::CallEnded => "call-ended",
        }
    }

    /// jambonz `sip:refer` actionHook fields (snake_case, as jambonz sends them): `refer_status` and, when
    /// a final NOTIFY came, `final_referred_call_status`.
    pub fn jambonz_action_fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        if let Some(status) = self.refer_status {
            fields.insert("refer_status".into(), json!(status));
        }
        if let Some(status) = self.final_notify_status() {
            fields.insert("final_referred_call_status".into(), json!(status));
        }
        fields
    }

    /// SWML `sip_refer_result` (and `return_value`): `success` or `failed`.
    pub fn swml_result(&self) -> &'static str {
        if self.succeeded() { "success" } else { "failed" }
    }

    /// The variables SWML's `sip_refer` sets, codes as strings (empty when unknown).
    pub fn swml_variables(&self, refer_to: &str) -> Vec<(&'static str, String)> {
        let code = |status: Option<u16>| status.map(|s| s.to_string()).unwrap_or_default();
        vec![
            ("sip_refer_to", refer_to.to_string()),
            ("sip_refer_result", self.swml_result().to_string()),
            ("return_value", self.swml_result().to_string()),
            ("sip_refer_response_code", code(self.refer_status)),
            ("sip_refer_to_response_code", code(self.final_notify_status())),
        ]
    }

    /// SWML's `calling.call.refer` status callback `params`: codes as strings, each only when known.
    pub fn swml_status_params(&self, call_id: &str, refer_to: &str) -> Value {
        let mut params = json!({ "call_id": call_id, "sip_refer_to": refer_to, "state": self.swml_result() });
        if let Some(status) = self.refer_status {
            params["sip_refer_response_code"] = json!(status.to_string());
        }
        if let Some(status) = self.final_notify_status() {
            params["sip_notify_response_code"] = json!(status.to_string());
        }
        params
    }

    /// Twilio `<Refer>` action parameters: `ReferCallStatus` (in-progress, busy, no-answer, canceled,
    /// failed), `ReferSipResponseCode`, `NotifySipResponseCode` (each code only when known).
    pub fn twilio_action_params(&self) -> Vec<(&'static str, String)> {
        let status = match self.outcome {
            ReferOutcome::Success(_) => "in-progress",
            ReferOutcome::Failed(486 | 600) => "busy",
            ReferOutcome::Failed(408 | 480) => "no-answer",
            ReferOutcome::Failed(487) => "canceled",
            _ => "failed",
        };
        let mut params = vec![("ReferCallStatus", status.to_string())];
        if let Some(code) = self.refer_status {
            params.push(("ReferSipResponseCode", code.to_string()));
        }
        if let Some(code) = self.final_notify_status() {
            params.push(("NotifySipResponseCode", code.to_string()));
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(refer_status: Option<u16>, notify_statuses: &[u16], outcome: ReferOutcome) -> ReferReport {
        ReferReport { refer_status, notify_statuses: notify_statuses.to_vec(), outcome }
    }

    #[test]
    fn a_completed_transfer_in_each_platforms_words() {
        let done = report(Some(202), &[100, 180, 200], ReferOutcome::Success(200));
        assert_eq!(
            Value::Object(done.jambonz_action_fields()),
            json!({"refer_status": 202, "final_referred_call_status": 200})
        );
        assert_eq!(
            done.swml_status_params("c1", "sip:alice@example.com"),
            json!({"call_id": "c1", "sip_refer_to": "sip:alice@example.com", "state": "success",
                   "sip_refer_response_code": "202", "sip_notify_response_code": "200"})
        );
        assert!(done.swml_variables("sip:a@b").contains(&("sip_refer_to_response_code", "200".into())));
        assert_eq!(
            done.twilio_action_params(),
            [
                ("ReferCallStatus", "in-progress".into()),
                ("ReferSipResponseCode", "202".into()),
                ("NotifySipResponseCode", "200".into())
            ]
        );
    }

    #[test]
    fn refusals_and_failures_keep_only_what_is_known() {
        let refused = report(Some(403), &[], ReferOutcome::Rejected(403));
        assert_eq!(Value::Object(refused.jambonz_action_fields()), json!({"refer_status": 403}));
        assert_eq!(refused.swml_result(), "failed");
        assert_eq!(
            refused.twilio_action_params(),
            [("ReferCallStatus", "failed".into()), ("ReferSipResponseCode", "403".into())]
        );

        let busy = report(Some(202), &[100, 486], ReferOutcome::Failed(486));
        assert_eq!(busy.final_notify_status(), Some(486));
        assert_eq!(busy.twilio_action_params()[0], ("ReferCallStatus", "busy".into()));

        // No final NOTIFY: the 487 stands for the missing status and is not reported as a NOTIFY's.
        let cut = report(Some(202), &[100], ReferOutcome::Failed(487));
        assert_eq!(cut.final_notify_status(), None);
        let silent = report(Some(202), &[], ReferOutcome::Timeout);
        assert_eq!(Value::Object(silent.jambonz_action_fields()), json!({"refer_status": 202}));
        // Refer-Sub: false: success on the 202 itself, no NOTIFY status.
        let no_sub = report(Some(202), &[], ReferOutcome::Success(202));
        assert_eq!(no_sub.final_notify_status(), None);
        assert_eq!(no_sub.swml_result(), "success");
    }
}
