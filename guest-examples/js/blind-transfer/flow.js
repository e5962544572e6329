// Answers, then transfers the caller with SIP REFER (a blind transfer) to the app's `target`, reporting
// progress the way jambonz's `sip:refer` does: each NOTIFY to `event_hook` as
// `{"event": "transfer-status", "call_status": "180"}`, and the result to `action_hook` with `refer_status`
// and `final_referred_call_status` beside the call's fields. When a transfer fails, the next of
// `fallback_targets` is tried. The call is hung up at the end.

import { defineFlow, hooks, Hook, jambonzCallFields, log } from "callwright-sdk";

/** How long to wait for the caller's ACK before transferring anyway. */
const CONFIRM_WAIT_MS = 5_000;

export const flow = defineFlow((call, config) => {
    const first = config.str("target");
    if (first === null) throw new Error('the app config has no "target"');
    const fallbacks = config.get("fallback_targets");
    const targets = [first, ...(Array.isArray(fallbacks) ? fallbacks.filter((t) => typeof t === "string") : [])];
    call.answer();
    if (waitForAck(call)?.tag === "ended") return;
    const actionHook = Hook.fromJson(config.get("action_hook"));
    const eventHook = Hook.fromJson(config.get("event_hook"));
    const info = call.info();
    for (const target of targets) {
        const transfer = call.sipRefer(referRequest(target, config)).follow((status) => {
            if (eventHook) report(eventHook, { event: "transfer-status", call_status: String(status) });
        });
        log.info(`transfer to ${target}: ${JSON.stringify(transfer.outcome)}`);
        if (actionHook) report(actionHook, actionPayload(info, transfer));
        if (transfer.outcome.tag === "failed") continue;
        if (transfer.outcome.tag === "call-ended") return;
        break;
    }
    call.hangup();
});

/** Waits until the caller acknowledged the answer (or a few seconds passed); returns the event that ended
 * the wait. */
function waitForAck(call) {
    for (;;) {
        const event = call.nextEvent(CONFIRM_WAIT_MS);
        if (event?.tag === "request" || event?.tag === "refer") {
            try {
                call.respond(event.val.id, event.tag === "request" ? 200 : 603);
            } catch {
                // the call may have ended meanwhile: the next event says so
            }
            continue;
        }
        return event;
    }
}

/** The REFER for `target` with the config's options. */
function referRequest(target, config) {
    const username = config.str("username");
    const password = config.str("password");
    const headers = config.get("headers");
    return {
        target,
        referredBy: config.str("referred_by"),
        noReferSub: config.bool("no_refer_sub") ?? false,
        timeoutMs: config.uint("timeout_ms"),
        credentials: username !== null && password !== null ? { username, password } : null,
        headers:
            headers !== null && typeof headers === "object" && !Array.isArray(headers)
                ? Object.entries(headers).filter(([, value]) => typeof value === "string")
                : [],
    };
}

/** The action hook's payload: jambonz's snake_case call fields and refer results, plus our outcome name. */
function actionPayload(info, transfer) {
    return {
        ...jambonzCallFields(info, "in-progress"),
        ...transfer.jambonzActionFields(),
        transfer_outcome: transfer.outcomeName(),
    };
}

/** Queues a status callback; a refused hook is logged, not fatal. */
function report(hook, payload) {
    try {
        hooks.notify(hook, payload);
    } catch (error) {
        log.warn(`hook ${hook.url} not sent: ${error.message}`);
    }
}
