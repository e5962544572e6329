/* Answers, then transfers the caller with SIP REFER (a blind transfer) to the app's `target`, reporting
 * progress the way jambonz's `sip:refer` does: each NOTIFY to `event_hook` as
 * {"event": "transfer-status", "call_status": "180"}, and the result to `action_hook` with `refer_status`
 * and `final_referred_call_status` beside the call's fields. When a transfer fails, the next of
 * `fallback_targets` is tried. The call is hung up at the end. */
#include <stdio.h>
#include <stdlib.h>

#include "callwright.h"

/* How long to wait for the caller's ACK before transferring anyway. */
#define CONFIRM_WAIT_MS 5000

/* Queues a status callback; a refused hook is logged, not fatal. */
static void report(const cw_hook *hook, const cw_obj *payload) {
    char *json = cw_obj_to_json(payload);
    cw_err err;
    if (cw_hooks_notify(hook, json, &err)) cw_log(CW_WARN, "hook %s not sent: %s", hook->url, err.message);
    free(json);
}

static void on_notify(uint16_t status, void *ctx) {
    const cw_hook *event_hook = ctx;
    if (!event_hook) return;
    char text[8];
    snprintf(text, sizeof text, "%u", (unsigned)status);
    cw_obj payload = {0};
    cw_obj_set_str(&payload, "event", "transfer-status");
    cw_obj_set_str(&payload, "call_status", text);
    report(event_hook, &payload);
    cw_obj_free(&payload);
}

/* Waits until the caller acknowledged the answer (or a few seconds passed); true when the call ended. */
static bool wait_for_ack(const cw_call *call) {
    for (;;) {
        cw_event event;
        if (!cw_call_next_event(call, CONFIRM_WAIT_MS, &event)) return false;
        cw_event_kind kind = event.kind;
        if (kind == CW_EVENT_REQUEST) cw_call_respond(call, event.request_id, 200, NULL, NULL, NULL);
        if (kind == CW_EVENT_REFER) cw_call_respond(call, event.request_id, 603, NULL, NULL, NULL);
        cw_event_free(&event);
        if (kind == CW_EVENT_ENDED) return true;
        if (kind == CW_EVENT_CONFIRMED) return false;
    }
}

/* Transfers to `target` with the config's options; 1: try the next target, 0: done (hang up), 2: the call
 * ended, -1: error. */
static int transfer(const cw_call *call, const char *target, const cw_json *config, const cw_call_info *info,
                    const cw_hook *action_hook, const cw_hook *event_hook, cw_err *err) {
    cw_refer_request request;
    cw_refer_request_init(&request, target);
    request.referred_by = cw_json_get_str(config, "referred_by");
    cw_json_get_bool(config, "no_refer_sub", &request.no_refer_sub);
    uint64_t timeout_ms;
    if (cw_json_get_u64(config, "timeout_ms", &timeout_ms))
        request.timeout_ms = timeout_ms > UINT32_MAX ? UINT32_MAX : (int64_t)timeout_ms;
    request.username = cw_json_get_str(config, "username");
    request.password = cw_json_get_str(config, "password");
    cw_headers headers = {0};
    cw_headers_add_json_object(&headers, cw_json_get(config, "headers"));
    request.headers = &headers;

    cw_refer refer;
    int rc = cw_call_sip_refer(call, &request, &refer, err);
    cw_headers_free(&headers);
    if (rc) return -1;
    cw_refer_report result;
    cw_refer_follow(&refer, on_notify, (void *)event_hook, &result);
    cw_refer_drop(&refer);
    if (result.outcome == CW_REFER_SUCCESS || result.outcome == CW_REFER_FAILED || result.outcome == CW_REFER_REJECTED)
        cw_log(CW_INFO, "transfer to %s: %s(%u)", target, cw_refer_report_outcome_name(&result),
               (unsigned)result.outcome_status);
    else
        cw_log(CW_INFO, "transfer to %s: %s", target, cw_refer_report_outcome_name(&result));
    if (action_hook) {
        /* jambonz's snake_case call fields and refer results, plus our outcome name. */
        cw_obj payload = {0};
        cw_jambonz_call_fields(info, "in-progress", &payload);
        cw_refer_report_jambonz_action_fields(&result, &payload);
        cw_obj_set_str(&payload, "transfer_outcome", cw_refer_report_outcome_name(&result));
        report(action_hook, &payload);
        cw_obj_free(&payload);
    }
    cw_refer_outcome outcome = result.outcome;
    cw_refer_report_free(&result);
    return outcome == CW_REFER_FAILED ? 1 : outcome == CW_REFER_CALL_ENDED ? 2 : 0;
}

int cw_flow(cw_call *call, const cw_json *config, cw_err *err) {
    const char *first = cw_json_get_str(config, "target");
    if (!first) return cw_fail(err, "the app config has no \"target\"");
    if (cw_call_answer(call, NULL, NULL, err)) return -1;
    if (wait_for_ack(call)) return 0;

    cw_hook action_hook, event_hook;
    bool has_action = cw_hook_from_json(cw_json_get(config, "action_hook"), &action_hook);
    bool has_event = cw_hook_from_json(cw_json_get(config, "event_hook"), &event_hook);
    cw_call_info info;
    cw_call_info_get(call, &info);
    const cw_json *fallbacks = cw_json_get(config, "fallback_targets");
    int rc = 0;
    for (size_t i = 0;; i++) {
        const char *target = first;
        if (i > 0) {
            const cw_json *item = cw_json_at(fallbacks, i - 1);
            if (!item) break;
            if (item->type != CW_JSON_STRING) continue;
            target = item->string;
        }
        rc = transfer(call, target, config, &info, has_action ? &action_hook : NULL,
                      has_event ? &event_hook : NULL, err);
        if (rc != 1) break;
    }
    cw_call_info_free(&info);
    cw_hook_free(&action_hook);
    cw_hook_free(&event_hook);
    if (rc == -1) return -1;
    if (rc == 2) return 0;
    return cw_call_hangup(call, err);
}
