/* The IVR of the Rust example, in C: greets the caller by speech (a key interrupts it), then logs each key
 * however it was sent (RFC 4733, SIP INFO, tones) and hangs up on 9 or #, or after `timeout_ms` (default
 * 10 000) without a key. */
#include <string.h>

#include "callwright.h"

static const char *const GREETING =
    "Welcome to callwright. Press 1 for the menu, 2 to leave a note, or 9 to hang up.";

int cw_flow(cw_call *call, const cw_json *config, cw_err *err) {
    if (cw_call_answer(call, NULL, NULL, err)) return -1;
    uint64_t timeout = 10000;
    cw_json_get_u64(config, "timeout_ms", &timeout);
    cw_err spoken;
    if (cw_media_say(call, GREETING, true, &spoken)) cw_log(CW_WARN, "cannot speak: %s", spoken.message);
    char digits[64] = "";
    for (;;) {
        cw_media_update update;
        if (!cw_media_wait(call, (int64_t)timeout, &update)) {
            cw_log(CW_INFO, "no digit in time: hanging up");
            return cw_call_hangup(call, err);
        }
        switch (update.kind) {
        case CW_MEDIA_CALL_ENDED:
            return 0;
        case CW_MEDIA_REQUEST:
            /* Not a digit (those the host answers itself): nothing this IVR handles. */
            if (cw_call_respond(call, update.request_id, 405, NULL, NULL, err)) return -1;
            break;
        case CW_MEDIA_DIGIT: {
            size_t len = strlen(digits);
            if (len + 1 < sizeof digits) {
                digits[len] = update.key[0];
                digits[len + 1] = '\0';
            }
            cw_log(CW_INFO, "digit %s from %s (so far %s)", update.key, update.source, digits);
            if (update.key[0] == '9' || update.key[0] == '#') return cw_call_hangup(call, err);
            break;
        }
        default:
            break;
        }
    }
}
