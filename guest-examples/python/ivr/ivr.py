"""The IVR of the Rust example, in Python: greets the caller by speech (a key interrupts it), then logs each
key however it was sent (RFC 4733, SIP INFO, tones) and hangs up on 9 or #, or after `timeout_ms` (default
10 000) without a key."""

from callwright import Call, Config, Ended, Request, flow, log, media

GREETING = "Welcome to callwright. Press 1 for the menu, 2 to leave a note, or 9 to hang up."


def handle(call: Call, config: Config) -> None:
    call.answer()
    timeout = config.get_int("timeout_ms", 10_000)
    try:
        media.say(call, config.get_str("greeting", GREETING), barge_in=True)
    except media.MediaError as error:
        log.warn(f"cannot speak: {error.message}")
    digits = ""
    while True:
        got = media.wait([call], timeout)
        if got is None:
            log.info("no digit in time: hanging up")
            call.hangup()
            return
        update = got[1]
        if isinstance(update, media.CallUpdate):
            event = getattr(update.value, "value", None)
            if isinstance(event, Ended):
                return
            # Not a digit (those the host answers itself): nothing this IVR handles.
            if isinstance(event, Request):
                call.respond(event.value.id, 405)
            continue
        if not isinstance(update, media.DigitPressed):
            continue
        digit = update.value
        digits += digit.key
        log.info(f"digit {digit.key} from {media.digit_source_name(digit.source)} (so far {digits})")
        if digit.key in ("9", "#"):
            call.hangup()
            return


# componentize-py exports the class named `Flow` of the app module.
Flow = flow(handle)
