"""Answers, then transfers the caller with SIP REFER (a blind transfer) to the app's `target`, reporting
progress the way jambonz's `sip:refer` does: each NOTIFY to `event_hook` as
`{"event": "transfer-status", "call_status": "180"}`, and the result to `action_hook` with `refer_status` and
`final_referred_call_status` beside the call's fields. When a transfer fails, the next of `fallback_targets`
is tried. The call is hung up at the end."""

from typing import Any, Dict

from callwright import (Call, CallInfo, Config, Confirmed, FlowError, ReferReport, ReferRequested, Request, describe,
                        flow, hooks, jambonz_call_fields, log, refer_request)
from callwright.hooks import Hook, HookError

#: How long to wait for the caller's ACK before transferring anyway.
CONFIRM_WAIT_MS = 5_000


def handle(call: Call, config: Config) -> None:
    first = config.get_str("target")
    if first is None:
        raise FlowError('the app config has no "target"')
    targets = [first] + [t for t in config.get_list("fallback_targets") if isinstance(t, str)]
    call.answer()
    if not wait_for_ack(call):
        return
    action_hook = hooks.from_json(config.get("action_hook"))
    event_hook = hooks.from_json(config.get("event_hook"))
    info = call.info()
    for target in targets:
        refer = call.sip_refer(make_refer_request(target, config))

        def on_notify(status: int) -> None:
            if event_hook is not None:
                report(event_hook, {"event": "transfer-status", "call_status": str(status)})

        with refer:
            transfer = refer.follow(on_notify)
        log.info(f"transfer to {target}: {describe(transfer.outcome)}")
        if action_hook is not None:
            report(action_hook, action_payload(info, transfer))
        if transfer.outcome_name == "failed":
            continue
        if transfer.outcome_name == "call-ended":
            return
        break
    call.hangup()


def wait_for_ack(call: Call) -> bool:
    """Waits until the caller acknowledged the answer (or a few seconds passed); False when the call ended
    meanwhile."""
    while True:
        event = call.next_event(CONFIRM_WAIT_MS)
        if isinstance(event, Request):
            try_respond(call, event.value.id, 200)
        elif isinstance(event, ReferRequested):
            try_respond(call, event.value.id, 603)
        else:
            return event is None or isinstance(event, Confirmed)


def try_respond(call: Call, request_id: int, status: int) -> None:
    try:
        call.respond(request_id, status)
    except Exception:  # noqa: BLE001 (as the Rust example: a failed answer is ignored)
        pass


def make_refer_request(target: str, config: Config):
    """The REFER for `target` with the config's options."""
    username, password = config.get_str("username"), config.get_str("password")
    return refer_request(
        target,
        referred_by=config.get_str("referred_by"),
        no_refer_sub=config.get_bool("no_refer_sub", False),
        timeout_ms=config.get_int("timeout_ms"),
        credentials=(username, password) if username is not None and password is not None else None,
        # Sorted by name, as the Rust example (its JSON objects are sorted maps) sends them.
        headers=[(name, value) for name, value in sorted(config.get_dict("headers").items()) if isinstance(value, str)],
    )


def action_payload(info: CallInfo, transfer: ReferReport) -> Dict[str, Any]:
    """The action hook's payload: jambonz's snake_case call fields and refer results, plus our outcome name."""
    payload = jambonz_call_fields(info, "in-progress")
    payload.update(transfer.jambonz_action_fields())
    payload["transfer_outcome"] = transfer.outcome_name
    return payload


def report(hook: Hook, payload: Dict[str, Any]) -> None:
    """Queues a status callback; a refused hook is logged, not fatal."""
    try:
        hooks.notify(hook, payload)
    except HookError as error:
        log.warn(f"hook {hook.url} not sent: {error}")


# componentize-py exports the class named `Flow` of the app module.
Flow = flow(handle)
