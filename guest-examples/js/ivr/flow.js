// The IVR of the Rust example, in JavaScript: greets the caller by speech (a key interrupts it), then
// logs each key however it was sent (RFC 4733, SIP INFO, tones) and hangs up on 9 or #, or after
// `timeout_ms` (default 10 000) without a key.

import { defineFlow, log, media } from "callwright-sdk";

const GREETING = "Welcome to callwright. Press 1 for the menu, 2 to leave a note, or 9 to hang up.";

export const flow = defineFlow((call, config) => {
    call.answer();
    const timeout = config.uint("timeout_ms") ?? 10_000;
    try {
        media.say(call, config.str("greeting") ?? GREETING, { bargeIn: true });
    } catch (error) {
        log.warn(`cannot speak: ${error.message}`);
    }
    let digits = "";
    for (;;) {
        const got = media.wait([call], timeout);
        if (got === null) {
            log.info("no digit in time: hanging up");
            call.hangup();
            return;
        }
        const { update } = got;
        if (update.tag === "call") {
            const event = update.val.tag === "event" ? update.val.val : null;
            if (event?.tag === "ended") return;
            // Not a digit (those the host answers itself): nothing this IVR handles.
            if (event?.tag === "request") call.respond(event.val.id, 405);
            continue;
        }
        if (update.tag !== "digit") continue;
        digits += update.val.key;
        log.info(`digit ${update.val.key} from ${update.val.source} (so far ${digits})`);
        if (update.val.key === "9" || update.val.key === "#") {
            call.hangup();
            return;
        }
    }
});
