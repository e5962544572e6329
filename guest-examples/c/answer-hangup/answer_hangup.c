/* Answers the call, then waits for the caller to hang up or for `hangup_after_ms` (default 30 000), and
 * hangs up itself if the caller has not. */
#include "callwright.h"

int cw_flow(cw_call *call, const cw_json *config, cw_err *err) {
    cw_call_info info;
    cw_call_info_get(call, &info);
    cw_log(CW_INFO, "answering %s calling %s", info.from_user, info.to_user);
    cw_call_info_free(&info);
    if (cw_call_answer(call, NULL, NULL, err)) return -1;
    uint64_t wait = 30000;
    cw_json_get_u64(config, "hangup_after_ms", &wait);
    for (;;) {
        cw_event event;
        if (!cw_call_next_event_until_end(call, wait, &event)) {
            cw_log(CW_INFO, "time is up: hanging up");
            return cw_call_hangup(call, err);
        }
        int rc = 0;
        char reason[32];
        switch (event.kind) {
        case CW_EVENT_ENDED:
            cw_log(CW_INFO, "caller hung up (%s)", cw_end_reason_name(&event, reason, sizeof reason));
            cw_event_free(&event);
            return 0;
        case CW_EVENT_REQUEST:
            /* Requests inside the call (INFO, MESSAGE) are acknowledged and otherwise ignored. */
            rc = cw_call_respond(call, event.request_id, 200, NULL, NULL, err);
            break;
        default:
            /* A transfer request (REFER) is left unanswered: the host declines it with 501. */
            break;
        }
        cw_event_free(&event);
        if (rc) return -1;
    }
}
