/* callwright C SDK: write callwright call flows in C.
 *
 * A thin layer over the bindings `wit-bindgen c` generates for the world `call-flow` (call_flow.h). A flow
 * defines `cw_flow`; the SDK exports it as `flow.handle`. Calls into the host block until SIP is done, so
 * a flow reads top to bottom.
 *
 * Conventions:
 * - Functions that can fail return 0 on success and -1 on failure, and fill `err` (which may be NULL).
 * - Strings in and out are NUL-terminated UTF-8. Strings and structs a function returns are the caller's:
 *   free them with free() or the matching cw_*_free().
 * - Arguments are borrowed: the SDK copies what it keeps.
 * - The generated types stay reachable (`raw` fields, call_flow.h) for anything not wrapped here.
 */
#ifndef CALLWRIGHT_H
#define CALLWRIGHT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "call_flow.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

/* What kind of failure an error is. */
typedef enum cw_err_kind {
    CW_ERR_NONE = 0,
    /* call-error */
    CW_ERR_CALL_ENDED,
    CW_ERR_INVALID_STATE,
    CW_ERR_INVALID_ARGUMENT,
    CW_ERR_TIMEOUT,
    CW_ERR_OTHER,
    /* hook-error */
    CW_ERR_HOOK_NOT_ALLOWED,
    CW_ERR_HOOK_INVALID,
    CW_ERR_HOOK_TIMEOUT,
    CW_ERR_HOOK_TRANSPORT,
    /* dial-error */
    CW_ERR_DIAL_FAILED,
    CW_ERR_DIAL_TIMEOUT,
    /* verb-error */
    CW_ERR_UNKNOWN_VERB,
    CW_ERR_INVALID_ARGUMENTS,
    CW_ERR_VERB_FAILED,
    /* media-error */
    CW_ERR_NO_MEDIA,
    CW_ERR_BAD_SOURCE,
    /* raised by the flow itself (cw_fail) */
    CW_ERR_FLOW,
} cw_err_kind;

/* An error: its kind, a status where one applies (dial-error.failed), and a message. */
typedef struct cw_err {
    cw_err_kind kind;
    uint16_t status;
    char message[512];
} cw_err;

/* Sets `err` (if not NULL) to a flow error with a printf-style message; returns -1, so a flow can
 * `return cw_fail(err, "no target");`. */
int cw_fail(cw_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- buffers and JSON */

/* A growable string. Zero-initialise it (`cw_buf b = {0};`); `ptr` is always NUL-terminated once
 * something was appended. Free with cw_buf_free (or take `ptr` and free() it). */
typedef struct cw_buf {
    char *ptr;
    size_t len;
    size_t cap;
} cw_buf;

void cw_buf_append(cw_buf *buf, const char *data, size_t len);
void cw_buf_puts(cw_buf *buf, const char *text);
void cw_buf_printf(cw_buf *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `text` (`len` bytes) as a JSON string literal, quotes included, escaping what JSON requires. */
void cw_buf_json_string(cw_buf *buf, const char *text, size_t len);
void cw_buf_free(cw_buf *buf);

/* A parsed JSON value (a tiny reader for configs and hook answers). */
typedef enum cw_json_type {
    CW_JSON_NULL,
    CW_JSON_BOOL,
    CW_JSON_NUMBER,
    CW_JSON_STRING,
    CW_JSON_ARRAY,
    CW_JSON_OBJECT,
} cw_json_type;

typedef struct cw_json {
    cw_json_type type;
    bool boolean;          /* CW_JSON_BOOL */
    double number;         /* CW_JSON_NUMBER */
    bool is_u64;           /* CW_JSON_NUMBER: a non-negative integer that fits u64 (serde's as_u64) */
    uint64_t u64;
    char *string;          /* CW_JSON_STRING: NUL-terminated (may contain \0: see string_len) */
    size_t string_len;
    size_t count;          /* CW_JSON_ARRAY / CW_JSON_OBJECT: number of items */
    struct cw_json *items; /* the items (an object's values) */
    char **keys;           /* CW_JSON_OBJECT: the keys, in document order */
} cw_json;

/* Parses `len` bytes of JSON; NULL when it is not valid JSON. Free with cw_json_free. */
cw_json *cw_json_parse(const char *text, size_t len);
void cw_json_free(cw_json *value);
/* An object's member (the last one when a key repeats, as serde_json keeps); NULL when absent or when
 * `object` is not an object (or is NULL). */
const cw_json *cw_json_get(const cw_json *object, const char *key);
/* An array's item; NULL when out of range or not an array. */
const cw_json *cw_json_at(const cw_json *array, size_t index);
/* Typed look-ups: the member's value when it exists and has that type. */
const char *cw_json_get_str(const cw_json *object, const char *key);
bool cw_json_get_u64(const cw_json *object, const char *key, uint64_t *out);
bool cw_json_get_bool(const cw_json *object, const char *key, bool *out);
/* Serialises a value back to JSON text (keys in document order). */
void cw_json_write(cw_buf *buf, const cw_json *value);

/* A JSON object to send (a hook payload), with serde_json's Map semantics: setting a key again replaces
 * its value, and keys are written sorted (as the Rust SDK writes them). Zero-initialise it. */
typedef struct cw_obj {
    size_t count;
    size_t cap;
    char **keys;
    char **values; /* raw JSON text */
} cw_obj;

void cw_obj_set_str(cw_obj *obj, const char *key, const char *value);
void cw_obj_set_uint(cw_obj *obj, const char *key, uint64_t value);
void cw_obj_set_int(cw_obj *obj, const char *key, int64_t value);
void cw_obj_set_bool(cw_obj *obj, const char *key, bool value);
void cw_obj_set_null(cw_obj *obj, const char *key);
/* Sets a value given as JSON text (a nested object or array); the caller vouches that it is valid. */
void cw_obj_set_raw(cw_obj *obj, const char *key, const char *json);
void cw_obj_remove(cw_obj *obj, const char *key);
/* Copies every field of `from` into `obj` (serde_json's Map::extend). */
void cw_obj_extend(cw_obj *obj, const cw_obj *from);
/* The object as JSON text (malloc'ed; free() it). */
char *cw_obj_to_json(const cw_obj *obj);
void cw_obj_free(cw_obj *obj);

/* ---------------------------------------------------------------- headers and bodies */

/* A list of SIP header fields to send. Zero-initialise it; free with cw_headers_free. */
typedef struct cw_headers {
    callwright_voice_types_header_t *items;
    size_t count;
    size_t cap;
} cw_headers;

void cw_headers_add(cw_headers *headers, const char *name, const char *value);
/* Adds every string member of a JSON object (others are skipped), sorted by name as the Rust SDK's
 * serde_json Map gives them. */
void cw_headers_add_json_object(cw_headers *headers, const cw_json *object);
void cw_headers_free(cw_headers *headers);

/* A body to send: borrowed bytes. */
typedef struct cw_body {
    const char *content_type;
    const void *data;
    size_t len;
} cw_body;

/* The value of header `name` (case-insensitive, first match) in a received header list; malloc'ed, or
 * NULL. */
char *cw_header_find(const callwright_voice_call_list_header_t *headers, const char *name);

/* A copy of a component-model string, NUL-terminated (malloc'ed). */
char *cw_string_dup(const call_flow_string_t *s);

/* ---------------------------------------------------------------- calls */

/* A call the guest holds: the flow's call (owned by the SDK until the flow returns), a dialled call or
 * one from cw_call_accept_refer (the caller's: release it with cw_call_drop). */
typedef struct cw_call {
    callwright_voice_call_own_call_t own;
    callwright_voice_call_borrow_call_t handle;
    bool owned; /* true: the flow owns it and releases it with cw_call_drop */
} cw_call;

typedef enum cw_direction { CW_INBOUND = 0, CW_OUTBOUND = 1 } cw_direction;

/* Facts about a call (`call.info`). Free with cw_call_info_free. */
typedef struct cw_call_info {
    char *id;
    char *sip_call_id;
    char *from;
    char *to;
    char *to_user;
    char *from_user;
    cw_direction direction;
    char *request_uri;
    char *remote_address;
    char *transport;
    /* Everything, as generated (headers, body). */
    callwright_voice_call_call_info_t raw;
} cw_call_info;

void cw_call_info_get(const cw_call *call, cw_call_info *out);
void cw_call_info_free(cw_call_info *info);
/* A header field of the INVITE that started the call (malloc'ed), or NULL. */
char *cw_call_header(const cw_call *call, const char *name);

int cw_call_ring(const cw_call *call, uint16_t status, const cw_headers *headers, const cw_body *body, cw_err *err);
int cw_call_answer(const cw_call *call, const cw_headers *headers, const cw_body *body, cw_err *err);
/* Answers unless already answered (an invalid-state error counts as done). */
int cw_call_answer_if_needed(const cw_call *call, cw_err *err);
int cw_call_reject(const cw_call *call, uint16_t status, const char *reason, const cw_headers *headers, cw_err *err);
int cw_call_hangup(const cw_call *call, cw_err *err);
int cw_call_respond(const cw_call *call, uint64_t request_id, uint16_t status, const cw_headers *headers,
                    const cw_body *body, cw_err *err);

/* A SIP response (from cw_call_sip_request). Free with cw_response_free. */
typedef struct cw_response {
    uint16_t status;
    char *reason;
    callwright_voice_call_sip_response_t raw;
} cw_response;

int cw_call_sip_request(const cw_call *call, const char *method, const cw_headers *headers, const cw_body *body,
                        cw_response *out, cw_err *err);
void cw_response_free(cw_response *response);

/* Events. */
typedef enum cw_event_kind {
    CW_EVENT_ENDED = CALLWRIGHT_VOICE_CALL_CALL_EVENT_ENDED,
    CW_EVENT_REQUEST = CALLWRIGHT_VOICE_CALL_CALL_EVENT_REQUEST,
    CW_EVENT_CONFIRMED = CALLWRIGHT_VOICE_CALL_CALL_EVENT_CONFIRMED,
    CW_EVENT_REFER = CALLWRIGHT_VOICE_CALL_CALL_EVENT_REFER,
} cw_event_kind;

typedef enum cw_end_reason {
    CW_END_REMOTE_HANGUP = CALLWRIGHT_VOICE_CALL_END_REASON_REMOTE_HANGUP,
    CW_END_LOCAL_HANGUP = CALLWRIGHT_VOICE_CALL_END_REASON_LOCAL_HANGUP,
    CW_END_CANCELLED = CALLWRIGHT_VOICE_CALL_END_REASON_CANCELLED,
    CW_END_NO_ACK = CALLWRIGHT_VOICE_CALL_END_REASON_NO_ACK,
    CW_END_REJECTED = CALLWRIGHT_VOICE_CALL_END_REASON_REJECTED,
    CW_END_FAILED = CALLWRIGHT_VOICE_CALL_END_REASON_FAILED,
} cw_end_reason;

/* Something that happened on a call. Free with cw_event_free. */
typedef struct cw_event {
    cw_event_kind kind;
    /* CW_EVENT_ENDED */
    cw_end_reason end_reason;
    uint16_t end_status; /* rejected / failed */
    /* CW_EVENT_REQUEST and CW_EVENT_REFER: pass to cw_call_respond (or cw_call_accept_refer) */
    uint64_t request_id;
    /* CW_EVENT_REQUEST */
    char *method;
    /* CW_EVENT_REFER (referred_by and replaces may be NULL) */
    char *refer_to;
    char *referred_by;
    char *replaces;
    /* Everything, as generated (headers, bodies). */
    callwright_voice_call_call_event_t raw;
} cw_event;

/* Waits for the next event, up to `timeout_ms` (negative: no limit). 1 with `out` filled, 0 when the
 * time ran out. */
int cw_call_next_event(const cw_call *call, int64_t timeout_ms, cw_event *out);
void cw_event_free(cw_event *event);
/* The end reason in words: "remote-hangup", "rejected(486)", ... (static or `buf`). */
const char *cw_end_reason_name(const cw_event *event, char *buf, size_t size);
/* Waits up to `timeout_ms` for an event that matters to a flow waiting on the call: the end, a request
 * or a REFER (`confirmed` is skipped). 1 with `out` filled, 0 when the time ran out. */
int cw_call_next_event_until_end(const cw_call *call, uint64_t timeout_ms, cw_event *out);
/* Answers a request nothing in particular expects: INFO, MESSAGE, NOTIFY, OPTIONS get 200 (and go to the
 * hook in the call variable CW_ROUTINE_REQUEST_HOOK, if any), anything else 501. */
void cw_call_answer_routine_request(const cw_call *call, const cw_event *request);
/* True when the call has ended (reads queued events without waiting, answering routine requests). */
bool cw_call_has_ended(const cw_call *call);
/* Waits up to `timeout_ms` for the end, answering routine requests; true when it ended. */
bool cw_call_wait_for_end(const cw_call *call, uint64_t timeout_ms);

#define CW_ROUTINE_REQUEST_HOOK "jambonz.sip_request_hook"

/* Accepts an inbound REFER (its request_id); the new call to the target is the caller's (cw_call_drop). */
int cw_call_accept_refer(const cw_call *call, uint64_t request_id, cw_call *out, cw_err *err);

/* An outbound call. `cw_dial_request_init` sets the defaults (all optional fields unset). */
typedef struct cw_dial_request {
    const char *target;
    const char *from;             /* NULL: the host's */
    const cw_headers *headers;    /* NULL: none */
    const cw_body *body;          /* NULL: the host's offer */
    const char *username;         /* both set: answer challenges */
    const char *password;
    int64_t timeout_ms;           /* negative: default (30 s) */
    const char *transport;        /* NULL: udp */
} cw_dial_request;

void cw_dial_request_init(cw_dial_request *request, const char *target);
int cw_dial(const cw_dial_request *request, cw_call *out, cw_err *err);
/* Releases a call the guest owns (a dialled or accepted one); no-op for the flow's own call. */
void cw_call_drop(cw_call *call);

/* ---------------------------------------------------------------- transfers (REFER) */

/* A REFER. `cw_refer_request_init` gives a blind transfer with the defaults. */
typedef struct cw_refer_request {
    const char *target;
    const char *referred_by;      /* NULL: the transferred party */
    const cw_headers *headers;    /* NULL: none */
    const char *username;         /* both set: answer a 401/407 */
    const char *password;
    bool no_refer_sub;
    const char *replaces;         /* attended: the id of another call */
    int64_t timeout_ms;           /* negative: default (15 s); capped at u32 max */
} cw_refer_request;

void cw_refer_request_init(cw_refer_request *request, const char *target);

/* A REFER in progress. Release with cw_refer_drop. */
typedef struct cw_refer {
    callwright_voice_call_own_refer_t own;
} cw_refer;

int cw_call_sip_refer(const cw_call *call, const cw_refer_request *request, cw_refer *out, cw_err *err);
/* The next step (generated form): free it with callwright_voice_call_refer_event_free. */
void cw_refer_next_event(const cw_refer *refer, callwright_voice_call_refer_event_t *out);
void cw_refer_drop(cw_refer *refer);

typedef enum cw_refer_outcome {
    CW_REFER_SUCCESS = CALLWRIGHT_VOICE_CALL_REFER_OUTCOME_SUCCESS,
    CW_REFER_FAILED = CALLWRIGHT_VOICE_CALL_REFER_OUTCOME_FAILED,
    CW_REFER_REJECTED = CALLWRIGHT_VOICE_CALL_REFER_OUTCOME_REJECTED,
    CW_REFER_TIMEOUT = CALLWRIGHT_VOICE_CALL_REFER_OUTCOME_TIMEOUT,
    CW_REFER_AUTH_FAILED = CALLWRIGHT_VOICE_CALL_REFER_OUTCOME_AUTH_FAILED,
    CW_REFER_CALL_ENDED = CALLWRIGHT_VOICE_CALL_REFER_OUTCOME_CALL_ENDED,
} cw_refer_outcome;

/* Everything a finished transfer told us. Free with cw_refer_report_free. */
typedef struct cw_refer_report {
    bool has_refer_status;
    uint16_t refer_status;        /* the REFER's final response */
    uint16_t *notify_statuses;    /* each NOTIFY's sipfrag status, in order */
    size_t notify_count;
    cw_refer_outcome outcome;
    uint16_t outcome_status;      /* success / failed / rejected */
} cw_refer_report;

/* Follows the transfer to its outcome, calling `on_notify(status, ctx)` (may be NULL) per NOTIFY. */
void cw_refer_follow(const cw_refer *refer, void (*on_notify)(uint16_t status, void *ctx), void *ctx,
                     cw_refer_report *out);
void cw_refer_report_free(cw_refer_report *report);
/* The final NOTIFY's status (the transferee's call to the target), when one came. */
bool cw_refer_report_final_notify_status(const cw_refer_report *report, uint16_t *out);
bool cw_refer_report_succeeded(const cw_refer_report *report);
/* "success", "failed", "rejected", "timeout", "auth-failed" or "call-ended". */
const char *cw_refer_report_outcome_name(const cw_refer_report *report);
/* jambonz `sip:refer` actionHook fields: refer_status and, when a final NOTIFY came,
 * final_referred_call_status (set into `out`). */
void cw_refer_report_jambonz_action_fields(const cw_refer_report *report, cw_obj *out);
/* SWML's sip_refer_result: "success" or "failed". */
const char *cw_refer_report_swml_result(const cw_refer_report *report);

/* The call fields every jambonz webhook carries: call_sid, call_id, direction, from, to (user parts),
 * sip_status (200) and call_status (set into `out`). */
void cw_jambonz_call_fields(const cw_call_info *info, const char *call_status, cw_obj *out);

/* ---------------------------------------------------------------- hooks */

/* Where a hook goes. Free with cw_hook_free. */
typedef struct cw_hook {
    char *url;
    char *method;   /* NULL: POST */
    char *username; /* NULL: no basic auth */
    char *password;
    int encoding;   /* -1: default (JSON); CALLWRIGHT_VOICE_HOOKS_BODY_ENCODING_* */
} cw_hook;

/* A POST hook to `url`. */
void cw_hook_post(cw_hook *hook, const char *url);
/* A hook from an app's JSON: a URL string, or {"url", "method", "username", "password"} (jambonz's
 * webhook object). False (and `hook` zeroed) for anything else. */
bool cw_hook_from_json(const cw_json *value, cw_hook *hook);
void cw_hook_free(cw_hook *hook);

/* Sends `payload` (JSON text) and waits for the answer: its status and body (malloc'ed; may be NULL). */
int cw_hooks_send(const cw_hook *hook, const char *payload, uint16_t *status, char **body, cw_err *err);
/* Queues a status callback (ordered, retried, never blocking). */
int cw_hooks_notify(const cw_hook *hook, const char *payload, cw_err *err);
/* cw_hooks_send for an action hook: the parsed JSON answer, or NULL (failure, non-2xx, empty, not JSON;
 * each logged as a warning prefixed with `context`). */
cw_json *cw_hooks_send_for_answer(const cw_hook *hook, const char *payload, const char *context);

/* ---------------------------------------------------------------- variables, log, clock, verbs */

/* A call variable (malloc'ed), or NULL. */
char *cw_var_get(const char *name);
void cw_var_set(const char *name, const char *value);
void cw_var_remove(const char *name);
/* All variables, as generated: free with call_flow_list_tuple2_string_string_free. */
void cw_var_entries(call_flow_list_tuple2_string_string_t *out);

typedef enum cw_level {
    CW_TRACE = CALLWRIGHT_VOICE_LOG_LEVEL_TRACE,
    CW_DEBUG = CALLWRIGHT_VOICE_LOG_LEVEL_DEBUG,
    CW_INFO = CALLWRIGHT_VOICE_LOG_LEVEL_INFO,
    CW_WARN = CALLWRIGHT_VOICE_LOG_LEVEL_WARN,
    CW_ERROR = CALLWRIGHT_VOICE_LOG_LEVEL_ERROR,
} cw_level;

/* Logs a printf-style message into the runtime's log, tagged with the call. */
void cw_log(cw_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

uint64_t cw_now_ms(void);
void cw_sleep(uint32_t ms);

/* Runs verb `name` with JSON `args` on `call`; its JSON result (malloc'ed) in `*result`. */
int cw_run_verb(const cw_call *call, const char *name, const char *args, char **result, cw_err *err);
/* Checks that verb `name` exists and `args` match its schema, without running it. */
int cw_check_verb(const char *name, const char *args, cw_err *err);

/* ---------------------------------------------------------------- the flow */

/* Implement this: handle one call. `config` is the app's flow.config (JSON null when absent or not
 * valid JSON); both are valid until it returns. Return 0, or non-zero with `err` set (cw_fail) to end
 * with an error. When it returns, the host hangs up if the call is still up. */
int cw_flow(cw_call *call, const cw_json *config, cw_err *err);

/* ---------------------------------------------------------------- media */

/* Speaks `text` in the built-in voice (flite) on `call`, behind what it plays already; with `barge_in`, the
 * caller's first key stops it. Returns once the speech is ready to play. Errors: CW_ERR_NO_MEDIA,
 * CW_ERR_CALL_ENDED, CW_ERR_BAD_SOURCE (naming why), CW_ERR_INVALID_ARGUMENT. */
int cw_media_say(const cw_call *call, const char *text, bool barge_in, cw_err *err);

/* Plays an uploaded file (`PUT /v1/media/{name}`), or a WAV at an http(s) URL when `source` has a scheme. */
int cw_media_play(const cw_call *call, const char *source, bool barge_in, cw_err *err);

/* Stops everything the call plays. */
void cw_media_stop(const cw_call *call);

/* Sends `digits` as RFC 4733 events, or SIP INFO to a far end that offered no telephone-event. */
int cw_media_send_digits(const cw_call *call, const char *digits, cw_err *err);

/* What cw_media_wait reports. */
typedef enum cw_media_kind {
    CW_MEDIA_DIGIT = 1,          /* `key`, `source`, `duration_ms` */
    CW_MEDIA_PLAYBACK_ENDED,     /* `playback_id`, `reason` ("completed", "stopped", "barged-in"), `duration_ms` */
    CW_MEDIA_DIGITS_SENT,
    CW_MEDIA_RECORDING_ENDED,    /* `reason` ("max-length", ...), `duration_ms` */
    CW_MEDIA_CALL_ENDED,
    CW_MEDIA_REQUEST,            /* a request to answer with cw_call_respond: `request_id` */
    CW_MEDIA_OTHER,              /* any other SIP update (confirmed, progress, a REFER, ...) */
} cw_media_kind;

typedef struct cw_media_update {
    cw_media_kind kind;
    char key[2];
    const char *source; /* "rtp-event", "sip-info", "in-band" */
    const char *reason;
    uint32_t duration_ms;
    uint64_t playback_id;
    uint64_t request_id;
} cw_media_update;

/* Waits up to `timeout_ms` (negative: no limit) for the call's next media or SIP update. 0 when the time
 * ran out. */
int cw_media_wait(const cw_call *call, int64_t timeout_ms, cw_media_update *out);

#ifdef __cplusplus
}
#endif
#endif
