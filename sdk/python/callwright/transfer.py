"""What a transfer (REFER) came to, and how the peers' platforms report it: jambonz `sip:refer`'s hook fields,
SignalWire SWML `sip_refer`'s variables and status callback, Twilio `<Refer>`'s action parameters. The same
computations as the Rust SDK's `transfer` module, so flows in either language report transfers alike."""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from wit_world.imports import call as _call
from wit_world.imports import types as _types

__all__ = ["Refer", "ReferReport", "jambonz_call_fields", "outcome_name", "outcome_status"]

_OUTCOME_NAMES = {
    _call.ReferOutcome_Success: "success",
    _call.ReferOutcome_Failed: "failed",
    _call.ReferOutcome_Rejected: "rejected",
    _call.ReferOutcome_Timeout: "timeout",
    _call.ReferOutcome_AuthFailed: "auth-failed",
    _call.ReferOutcome_CallEnded: "call-ended",
}


def jambonz_call_fields(info: "_call.CallInfo", call_status: str) -> Dict[str, Any]:
    """The call fields every jambonz webhook carries (snake_case, as jambonz sends them): `call_sid`,
    `call_id`, `direction`, `from`, `to` (user parts), `sip_status` (the answer, 200) and `call_status`."""
    direction = "inbound" if info.direction == _types.Direction.INBOUND else "outbound"
    return {
        "call_sid": info.id,
        "call_id": info.sip_call_id,
        "direction": direction,
        "from": info.from_user,
        "to": info.to_user,
        "sip_status": 200,
        "call_status": call_status,
    }


def outcome_name(outcome: "_call.ReferOutcome") -> str:
    """`success`, `failed`, `rejected`, `timeout`, `auth-failed` or `call-ended`."""
    return _OUTCOME_NAMES[type(outcome)]


def outcome_status(outcome: "_call.ReferOutcome") -> Optional[int]:
    """The status an outcome carries (success, failed, rejected), else None."""
    return getattr(outcome, "value", None)


@dataclass
class ReferReport:
    """Everything a finished transfer told us."""

    #: The status of the REFER's final response, if one came.
    refer_status: Optional[int]
    #: Each NOTIFY's sipfrag status, in order.
    notify_statuses: List[int] = field(default_factory=list)
    #: How it ended: one of the `ReferOutcome_*` variants (see `outcome_name`).
    outcome: Any = None

    @property
    def outcome_name(self) -> str:
        """`success`, `failed`, `rejected`, `timeout`, `auth-failed` or `call-ended`."""
        return outcome_name(self.outcome)

    @property
    def outcome_status(self) -> Optional[int]:
        """The status the outcome carries (success, failed, rejected), else None."""
        return outcome_status(self.outcome)

    def final_notify_status(self) -> Optional[int]:
        """The final status of the transferee's call to the target, as a final NOTIFY reported it."""
        if isinstance(self.outcome, (_call.ReferOutcome_Success, _call.ReferOutcome_Failed)):
            if self.outcome.value in self.notify_statuses:
                return self.outcome.value
        return None

    def succeeded(self) -> bool:
        """True when the transferee reached the target (or accepted a REFER without subscription)."""
        return isinstance(self.outcome, _call.ReferOutcome_Success)

    def jambonz_action_fields(self) -> Dict[str, Any]:
        """jambonz `sip:refer` actionHook fields: `refer_status` and, when a final NOTIFY came,
        `final_referred_call_status`."""
        fields: Dict[str, Any] = {}
        if self.refer_status is not None:
            fields["refer_status"] = self.refer_status
        final = self.final_notify_status()
        if final is not None:
            fields["final_referred_call_status"] = final
        return fields

    def swml_result(self) -> str:
        """SWML `sip_refer_result` (and `return_value`): `success` or `failed`."""
        return "success" if self.succeeded() else "failed"

    def swml_variables(self, refer_to: str) -> List[Tuple[str, str]]:
        """The variables SWML's `sip_refer` sets, codes as strings (empty when unknown)."""

        def code(status: Optional[int]) -> str:
            return "" if status is None else str(status)

        return [
            ("sip_refer_to", refer_to),
            ("sip_refer_result", self.swml_result()),
            ("return_value", self.swml_result()),
            ("sip_refer_response_code", code(self.refer_status)),
            ("sip_refer_to_response_code", code(self.final_notify_status())),
        ]

    def swml_status_params(self, call_id: str, refer_to: str) -> Dict[str, Any]:
        """SWML's `calling.call.refer` status callback `params`: codes as strings, each only when known."""
        params: Dict[str, Any] = {"call_id": call_id, "sip_refer_to": refer_to, "state": self.swml_result()}
        if self.refer_status is not None:
            params["sip_refer_response_code"] = str(self.refer_status)
        final = self.final_notify_status()
        if final is not None:
            params["sip_notify_response_code"] = str(final)
        return params

    def twilio_action_params(self) -> List[Tuple[str, str]]:
        """Twilio `<Refer>` action parameters: `ReferCallStatus` (in-progress, busy, no-answer, canceled,
        failed), `ReferSipResponseCode`, `NotifySipResponseCode` (each code only when known)."""
        outcome = self.outcome
        if isinstance(outcome, _call.ReferOutcome_Success):
            status = "in-progress"
        elif isinstance(outcome, _call.ReferOutcome_Failed) and outcome.value in (486, 600):
            status = "busy"
        elif isinstance(outcome, _call.ReferOutcome_Failed) and outcome.value in (408, 480):
            status = "no-answer"
        elif isinstance(outcome, _call.ReferOutcome_Failed) and outcome.value == 487:
            status = "canceled"
        else:
            status = "failed"
        params = [("ReferCallStatus", status)]
        if self.refer_status is not None:
            params.append(("ReferSipResponseCode", str(self.refer_status)))
        final = self.final_notify_status()
        if final is not None:
            params.append(("NotifySipResponseCode", str(final)))
        return params


class Refer:
    """A REFER in progress (from `Call.sip_refer`). Use as a context manager to release it early."""

    def __init__(self, raw: "_call.Refer"):
        #: The generated binding's `refer` resource.
        self.raw = raw

    def next_event(self) -> "_call.ReferEvent":
        """Waits for the next step: `ReferEvent_Response`, `ReferEvent_Notify`, then `ReferEvent_Outcome`
        (repeated). Always ends: the host applies the timeout."""
        return self.raw.next_event()

    def follow(self, on_notify: Optional[Callable[[int], None]] = None) -> ReferReport:
        """Follows the transfer to its outcome, calling `on_notify` with each NOTIFY's status as it comes."""
        refer_status: Optional[int] = None
        notify_statuses: List[int] = []
        while True:
            event = self.raw.next_event()
            if isinstance(event, _call.ReferEvent_Response):
                refer_status = event.value.status
            elif isinstance(event, _call.ReferEvent_Notify):
                notify_statuses.append(event.value)
                if on_notify is not None:
                    on_notify(event.value)
            else:
                return ReferReport(refer_status, notify_statuses, event.value)

    def close(self) -> None:
        """Releases the resource."""
        self.raw.__exit__(None, None, None)

    def __enter__(self) -> "Refer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
