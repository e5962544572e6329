// Answers the call, then waits for the caller to hang up or for `hangup_after_ms` (default 30 000), and
// hangs up itself if the caller has not.

import { defineFlow, log } from "callwright-sdk";

export const flow = defineFlow((call, config) => {
    const info = call.info();
    log.info(`answering ${info.fromUser} calling ${info.toUser}`);
    call.answer();
    const wait = config.uint("hangup_after_ms") ?? 30_000;
    for (;;) {
        const event = call.nextEventUntilEnd(wait);
        if (event === null) {
            log.info("time is up: hanging up");
            call.hangup();
            return;
        }
        switch (event.tag) {
            case "ended":
                log.info(`caller hung up (${JSON.stringify(event.val)})`);
                return;
            // Requests inside the call (INFO, MESSAGE) are acknowledged and otherwise ignored.
            case "request":
                call.respond(event.val.id, 200);
                break;
            // A transfer request (REFER) is left unanswered: the host declines it with 501.
            default:
                break;
        }
    }
});
