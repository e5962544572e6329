"""Answers the call, then waits for the caller to hang up or for `hangup_after_ms` (default 30 000), and hangs
up itself if the caller has not."""

from callwright import Call, Config, Ended, Request, describe, flow, log


def handle(call: Call, config: Config) -> None:
    info = call.info()
    log.info(f"answering {info.from_user} calling {info.to_user}")
    call.answer()
    wait = config.get_int("hangup_after_ms", 30_000)
    while True:
        event = call.next_event_until_end(wait)
        if event is None:
            log.info("time is up: hanging up")
            call.hangup()
            return
        if isinstance(event, Ended):
            log.info(f"caller hung up ({describe(event.value)})")
            return
        # Requests inside the call (INFO, MESSAGE) are acknowledged and otherwise ignored.
        if isinstance(event, Request):
            call.respond(event.value.id, 200)
        # A transfer request (REFER) is left unanswered: the host declines it with 501.


# componentize-py exports the class named `Flow` of the app module.
Flow = flow(handle)
