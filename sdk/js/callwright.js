// Write callwright call flows in JavaScript.
//
// A flow is a function `(call, config) => void` exported as the component's `flow` interface:
//
//     import { defineFlow, log } from "callwright-sdk";
//     export const flow = defineFlow((call, config) => {
//         call.answer();
//         if (!call.waitForEnd(config.uint("seconds") ?? 30_000)) call.hangup();
//     });
//
// The module is bundled (esbuild) and componentized with jco's QuickJS backend against the WIT world
// `call-flow` (see guest-examples/js/build.sh). Calls into the host block until SIP is done, so a flow reads
// top to bottom: no promises. Host failures are thrown as `CallError`, `DialError`, `HookError` or
// `VerbError`, each carrying the WIT variant (`error.tag`, `error.value`). Variants the host returns (events,
// end reasons, refer outcomes) are plain `{ tag, val }` objects, records have camelCase keys, a WIT `none` is
// `null`.

import * as callApi from "callwright:voice/call@0.1.0";
import * as logApi from "callwright:voice/log@0.1.0";
import * as clockApi from "callwright:voice/clock@0.1.0";
import * as variablesApi from "callwright:voice/variables@0.1.0";
import * as hooksApi from "callwright:voice/hooks@0.1.0";
import * as dispatchApi from "callwright:voice/dispatch@0.1.0";
import * as mediaApi from "callwright:voice/media@0.1.0";

const U32_MAX = 0xffffffff;

// ---------------------------------------------------------------------------------------------------------
// Errors

/** The WIT variant a failed host call threw (`{ tag, val }`), or null when `error` is not one. */
function variantOf(error) {
    const payload = error && typeof error === "object" ? error.payload : undefined;
    return payload && typeof payload === "object" && typeof payload.tag === "string" ? payload : null;
}

/** A host error: `tag` is the WIT case (`"call-ended"`, `"invalid-state"`, ...), `value` its payload. */
class HostError extends Error {
    constructor(variant) {
        super(variant.val === undefined ? variant.tag : `${variant.tag}: ${variant.val}`);
        this.variant = variant;
        this.tag = variant.tag;
        this.value = variant.val;
    }
}

/** WIT `call-error`: `call-ended`, `invalid-state`, `invalid-argument`, `timeout`, `other`. */
export class CallError extends HostError {}
CallError.prototype.name = "CallError";
/** WIT `dial-error`: `failed` (status), `timeout`, `invalid-argument`, `other`. */
export class DialError extends HostError {}
DialError.prototype.name = "DialError";
/** WIT `hook-error`: `not-allowed`, `invalid`, `timeout`, `transport`. */
export class HookError extends HostError {}
HookError.prototype.name = "HookError";
/** WIT `verb-error`: `unknown-verb`, `invalid-arguments`, `failed` (each with a message). */
export class VerbError extends HostError {}
VerbError.prototype.name = "VerbError";

/** WIT `media-error`: `no-media`, `call-ended`, `bad-source` (naming the source), `invalid-argument`. */
export class MediaError extends HostError {}
MediaError.prototype.name = "MediaError";

/** Runs `f`, turning a thrown WIT variant into an `ErrorClass`. */
function hostCall(ErrorClass, f) {
    try {
        return f();
    } catch (error) {
        const variant = variantOf(error);
        throw variant ? new ErrorClass(variant) : error;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Text, headers, bodies

/** UTF-8 bytes of `text`. */
export function utf8Encode(text) {
    if (typeof TextEncoder !== "undefined") return new TextEncoder().encode(text);
    const bytes = [];
    for (const ch of String(text)) {
        const c = ch.codePointAt(0);
        if (c < 0x80) bytes.push(c);
        else if (c < 0x800) bytes.push(0xc0 | (c >> 6), 0x80 | (c & 63));
        else if (c < 0x10000) bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
        else bytes.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
    return new Uint8Array(bytes);
}

/** Text of UTF-8 `bytes`; invalid sequences become U+FFFD (like Rust's `from_utf8_lossy`). */
export function utf8Decode(bytes) {
    if (typeof TextDecoder !== "undefined") return new TextDecoder().decode(bytes);
    let out = "";
    for (let i = 0; i < bytes.length; ) {
        const b = bytes[i];
        let need = 0, c = 0, min = 0;
        if (b < 0x80) { out += String.fromCharCode(b); i++; continue; }
        else if (b >= 0xc2 && b < 0xe0) { need = 1; c = b & 31; min = 0x80; }
        else if (b >= 0xe0 && b < 0xf0) { need = 2; c = b & 15; min = 0x800; }
        else if (b >= 0xf0 && b < 0xf5) { need = 3; c = b & 7; min = 0x10000; }
        else { out += "\ufffd"; i++; continue; }
        let j = 1;
        for (; j <= need && i + j < bytes.length && (bytes[i + j] & 0xc0) === 0x80; j++) c = (c << 6) | (bytes[i + j] & 63);
        if (j <= need) { out += "\ufffd"; i += j; continue; } // truncated: one replacement for what was read
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c < 0xe000)) { out += "\ufffd"; i++; continue; }
        out += String.fromCodePoint(c);
        i += need + 1;
    }
    return out;
}

/** Header fields as the host takes them: from `[{name, value}]`, `[[name, value]]` or `{name: value}`. */
export function toHeaders(headers) {
    if (headers == null) return [];
    if (Array.isArray(headers)) {
        return headers.map((h) => (Array.isArray(h) ? { name: String(h[0]), value: String(h[1]) } : { name: String(h.name), value: String(h.value) }));
    }
    return Object.entries(headers).map(([name, value]) => ({ name, value: String(value) }));
}

/** A body as the host takes it: `{contentType, data}` with `data` a string or bytes; null for none. */
export function toBody(body) {
    if (body == null) return null;
    const data = typeof body.data === "string" ? utf8Encode(body.data) : body.data instanceof Uint8Array ? body.data : new Uint8Array(body.data ?? []);
    return { contentType: String(body.contentType), data };
}

/** A body of the given content type (`data`: string or bytes). */
export function body(contentType, data) {
    return toBody({ contentType, data });
}

/** The text of a body the host gave (`""` for none). */
export function bodyText(body) {
    return body ? utf8Decode(body.data) : "";
}

/** The value of header `name` (case-insensitive) in a header list, or null. */
export function findHeader(headers, name) {
    const lower = name.toLowerCase();
    const found = (headers ?? []).find((h) => h.name.toLowerCase() === lower);
    return found ? found.value : null;
}

// ---------------------------------------------------------------------------------------------------------
// Log, clock, variables

const LEVELS = ["trace", "debug", "info", "warn", "error"];

/** Logs `message` into the runtime's log, tagged with the call: `log("info", msg)` or `log.info(msg)`. */
export function log(level, message) {
    if (!LEVELS.includes(level)) throw new TypeError(`log level ${level} is not one of ${LEVELS.join(", ")}`);
    logApi.log(level, String(message));
}
for (const level of LEVELS) log[level] = (message) => log(level, message);

/** Sleeping and wall-clock time. */
export const clock = {
    /** Sleeps `ms` milliseconds (the call's events keep queueing). */
    sleep: (ms) => clockApi.sleep(Math.max(0, Math.min(U32_MAX, Math.floor(ms)))),
    /** Milliseconds since the UNIX epoch. */
    nowMs: () => Number(clockApi.nowMs()),
};

/** Per-call variables shared by every module running on the call. */
export const variables = {
    /** The value of `name`, or null. */
    get: (name) => variablesApi.get(name),
    set: (name, value) => variablesApi.set(name, String(value)),
    remove: (name) => variablesApi.remove(name),
    /** Every variable as `[name, value]` pairs. */
    entries: () => variablesApi.entries(),
};

// ---------------------------------------------------------------------------------------------------------
// Config

/** The app's `flow.config` JSON: `value` is the parsed JSON (null when absent or invalid). */
export class Config {
    constructor(text) {
        try {
            this.value = JSON.parse(text);
        } catch {
            this.value = null;
        }
    }

    /** Any field (undefined when missing or when the config is not an object). */
    get(key) {
        const v = this.value;
        return v !== null && typeof v === "object" && !Array.isArray(v) && Object.hasOwn(v, key) ? v[key] : undefined;
    }

    /** A string field, or null. */
    str(key) {
        const v = this.get(key);
        return typeof v === "string" ? v : null;
    }

    /** A non-negative integer field, or null. */
    uint(key) {
        const v = this.get(key);
        return Number.isInteger(v) && v >= 0 ? v : null;
    }

    /** A boolean field, or null. */
    bool(key) {
        const v = this.get(key);
        return typeof v === "boolean" ? v : null;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Hooks

/** Where a hook goes: `{url, method, username, password, encoding}` (WIT `hook`). */
export class Hook {
    constructor(url, { method = null, username = null, password = null, encoding = null } = {}) {
        this.url = url;
        this.method = method;
        this.username = username;
        this.password = password;
        this.encoding = encoding;
    }

    /** A POST hook to `url`. */
    static post(url) {
        return new Hook(url);
    }

    /** A hook from an app's JSON: a URL string, or `{url, method, username, password}` (jambonz's webhook
     * object). null for anything else. */
    static fromJson(value) {
        if (typeof value === "string") return Hook.post(value);
        if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
        const text = (key) => (typeof value[key] === "string" ? value[key] : null);
        if (text("url") === null) return null;
        return new Hook(text("url"), { method: text("method"), username: text("username"), password: text("password") });
    }
}

function toHookRecord(hook) {
    const h = typeof hook === "string" ? Hook.post(hook) : hook;
    return { url: h.url, method: h.method ?? null, username: h.username ?? null, password: h.password ?? null, encoding: h.encoding ?? null };
}

function payloadText(payload) {
    return typeof payload === "string" ? payload : JSON.stringify(payload);
}

/** Webhooks to the app's servers (the app's `hooks.allow` list says which hosts). */
export const hooks = {
    /** Sends `payload` (an object, or JSON text) and waits for the answer `{status, body}`. Throws
     * `HookError`. */
    send(hook, payload) {
        return hostCall(HookError, () => hooksApi.send(toHookRecord(hook), payloadText(payload)));
    },

    /** Queues `payload` as a status callback (ordered, retried, never blocking). Throws `HookError` for
     * immediate failures. */
    notify(hook, payload) {
        hostCall(HookError, () => hooksApi.notify(toHookRecord(hook), payloadText(payload)));
    },

    /** Sends an action hook and returns its JSON answer; null when the hook failed, answered other than 2xx,
     * or answered nothing or something that is not JSON (each logged, prefixed with `context`). */
    sendForAnswer(hook, payload, context) {
        const url = toHookRecord(hook).url;
        let response;
        try {
            response = hooks.send(hook, payload);
        } catch (error) {
            log.warn(`${context}: hook ${url} failed: ${error.message}`);
            return null;
        }
        if (response.status < 200 || response.status >= 300) {
            log.warn(`${context}: hook ${url} answered ${response.status}`);
            return null;
        }
        if (response.body.trim() === "") return null;
        try {
            return JSON.parse(response.body);
        } catch (error) {
            log.warn(`${context}: hook ${url} answered with invalid JSON: ${error.message}`);
            return null;
        }
    },
};

// ---------------------------------------------------------------------------------------------------------
// Transfers (REFER)

/** The call fields every jambonz webhook carries (snake_case, as jambonz sends them): `call_sid`, `call_id`,
 * `direction`, `from`, `to` (user parts), `sip_status` (the answer, 200) and `call_status`. */
export function jambonzCallFields(info, callStatus) {
    return {
        call_sid: info.id,
        call_id: info.sipCallId,
        direction: info.direction,
        from: info.fromUser,
        to: info.toUser,
        sip_status: 200,
        call_status: callStatus,
    };
}

/** Everything a finished transfer told us. */
export class ReferReport {
    constructor(referStatus, notifyStatuses, outcome) {
        /** The status of the REFER's final response, or null. */
        this.referStatus = referStatus;
        /** Each NOTIFY's sipfrag status, in order. */
        this.notifyStatuses = notifyStatuses;
        /** How it ended: `{tag: "success"|"failed"|"rejected"|"timeout"|"auth-failed"|"call-ended", val}`. */
        this.outcome = outcome;
    }

    /** The final status of the transferee's call to the target, as a final NOTIFY reported it; or null. */
    finalNotifyStatus() {
        const { tag, val } = this.outcome;
        return (tag === "success" || tag === "failed") && this.notifyStatuses.includes(val) ? val : null;
    }

    /** True when the transferee reached the target (or accepted a REFER without subscription). */
    succeeded() {
        return this.outcome.tag === "success";
    }

    /** The outcome's name: `success`, `failed`, `rejected`, `timeout`, `auth-failed` or `call-ended`. */
    outcomeName() {
        return this.outcome.tag;
    }

    /** jambonz `sip:refer` actionHook fields: `refer_status` and, when a final NOTIFY came,
     * `final_referred_call_status`. */
    jambonzActionFields() {
        const fields = {};
        if (this.referStatus !== null) fields.refer_status = this.referStatus;
        const final = this.finalNotifyStatus();
        if (final !== null) fields.final_referred_call_status = final;
        return fields;
    }

    /** SWML `sip_refer_result` (and `return_value`): `success` or `failed`. */
    swmlResult() {
        return this.succeeded() ? "success" : "failed";
    }

    /** The variables SWML's `sip_refer` sets, as `[name, value]` pairs, codes as strings (empty when
     * unknown). */
    swmlVariables(referTo) {
        const code = (status) => (status === null ? "" : String(status));
        return [
            ["sip_refer_to", referTo],
            ["sip_refer_result", this.swmlResult()],
            ["return_value", this.swmlResult()],
            ["sip_refer_response_code", code(this.referStatus)],
            ["sip_refer_to_response_code", code(this.finalNotifyStatus())],
        ];
    }

    /** SWML's `calling.call.refer` status callback `params`: codes as strings, each only when known. */
    swmlStatusParams(callId, referTo) {
        const params = { call_id: callId, sip_refer_to: referTo, state: this.swmlResult() };
        if (this.referStatus !== null) params.sip_refer_response_code = String(this.referStatus);
        const final = this.finalNotifyStatus();
        if (final !== null) params.sip_notify_response_code = String(final);
        return params;
    }

    /** Twilio `<Refer>` action parameters as `[name, value]` pairs: `ReferCallStatus`,
     * `ReferSipResponseCode`, `NotifySipResponseCode` (each code only when known). */
    twilioActionParams() {
        const { tag, val } = this.outcome;
        let status = "failed";
        if (tag === "success") status = "in-progress";
        else if (tag === "failed" && (val === 486 || val === 600)) status = "busy";
        else if (tag === "failed" && (val === 408 || val === 480)) status = "no-answer";
        else if (tag === "failed" && val === 487) status = "canceled";
        const params = [["ReferCallStatus", status]];
        if (this.referStatus !== null) params.push(["ReferSipResponseCode", String(this.referStatus)]);
        const final = this.finalNotifyStatus();
        if (final !== null) params.push(["NotifySipResponseCode", String(final)]);
        return params;
    }
}

/** A REFER in progress. */
export class Refer {
    constructor(raw) {
        this.raw = raw;
    }

    /** The next step: `{tag: "response", val: sipResponse}`, `{tag: "notify", val: status}`, then
     * `{tag: "outcome", val: referOutcome}` (repeated). */
    nextEvent() {
        return this.raw.nextEvent();
    }

    /** Follows the transfer to its outcome, calling `onNotify(status)` for each NOTIFY; returns a
     * `ReferReport`. */
    follow(onNotify = () => {}) {
        let referStatus = null;
        const notifyStatuses = [];
        for (;;) {
            const event = this.raw.nextEvent();
            if (event.tag === "response") referStatus = event.val.status;
            else if (event.tag === "notify") {
                notifyStatuses.push(event.val);
                onNotify(event.val);
            } else return new ReferReport(referStatus, notifyStatuses, event.val);
        }
    }
}

/** A REFER request (WIT `refer-request`) from a target string or `{target, referredBy, headers,
 * credentials: {username, password}, noReferSub, replaces, timeoutMs}`. */
export function referRequest(request) {
    const r = typeof request === "string" ? { target: request } : request;
    return {
        target: String(r.target ?? ""),
        referredBy: r.referredBy ?? null,
        headers: toHeaders(r.headers),
        credentials: r.credentials ? { username: r.credentials.username, password: r.credentials.password } : null,
        noReferSub: Boolean(r.noReferSub),
        replaces: r.replaces ?? null,
        timeoutMs: r.timeoutMs == null ? null : Math.min(U32_MAX, r.timeoutMs),
    };
}

/** A dial request (WIT `dial-request`) from a target string or `{target, from, headers, body, credentials,
 * timeoutMs, transport}`. */
export function dialRequest(request) {
    const r = typeof request === "string" ? { target: request } : request;
    return {
        target: String(r.target ?? ""),
        from: r.from ?? null,
        headers: toHeaders(r.headers),
        body: toBody(r.body),
        credentials: r.credentials ? { username: r.credentials.username, password: r.credentials.password } : null,
        timeoutMs: r.timeoutMs == null ? null : Math.min(U32_MAX, r.timeoutMs),
        transport: r.transport ?? null,
    };
}

// ---------------------------------------------------------------------------------------------------------
// Calls

/** The call variable holding a hook (JSON) that routine in-dialog requests are posted to. */
export const ROUTINE_REQUEST_HOOK = "jambonz.sip_request_hook";

/** One SIP call. Methods throw `CallError` when the host refuses. */
export class Call {
    /** Wraps the host's `call` resource (`raw`). */
    constructor(raw) {
        this.raw = raw;
    }

    /** Facts about the call (WIT `call-info`: id, sipCallId, from, to, toUser, fromUser, direction,
     * requestUri, headers, body, remoteAddress, transport). */
    info() {
        return this.raw.info();
    }

    /** Sends a provisional response (180 Ringing by default, 183 with early media). */
    ring(status = 180, { headers, body } = {}) {
        hostCall(CallError, () => this.raw.ring(status, toHeaders(headers), toBody(body)));
    }

    /** Answers with 200 OK; without a body the host answers the caller's offer itself. */
    answer({ headers, body } = {}) {
        hostCall(CallError, () => this.raw.answer(toHeaders(headers), toBody(body)));
    }

    /** Answers unless answered already (an `invalid-state` refusal is ignored). */
    answerIfNeeded() {
        try {
            this.answer();
        } catch (error) {
            if (!(error instanceof CallError && error.tag === "invalid-state")) throw error;
        }
    }

    /** Rejects an unanswered call (status 300-699). */
    reject(status, { reason, headers } = {}) {
        hostCall(CallError, () => this.raw.reject(status, reason ?? null, toHeaders(headers)));
    }

    /** Hangs up: BYE when up, CANCEL or 480 before the answer. */
    hangup() {
        hostCall(CallError, () => this.raw.hangup());
    }

    /** Sends INFO, MESSAGE, NOTIFY, OPTIONS or UPDATE inside the call; returns the final response
     * `{status, reason, headers, body}`. */
    sipRequest(method, { headers, body } = {}) {
        return hostCall(CallError, () => this.raw.sipRequest(method, toHeaders(headers), toBody(body)));
    }

    /** Answers a request from a `request` (or `refer`) event. */
    respond(requestId, status, { headers, body } = {}) {
        hostCall(CallError, () => this.raw.respond(requestId, status, toHeaders(headers), toBody(body)));
    }

    /** Waits for the next event up to `timeoutMs` (null/undefined: no limit); null when the time ran out.
     * Events: `{tag: "ended", val: endReason}`, `{tag: "request", val: incomingRequest}`, `{tag: "confirmed"}`,
     * `{tag: "refer", val: inboundRefer}`. */
    nextEvent(timeoutMs = null) {
        const t = timeoutMs == null ? null : Math.max(0, Math.min(U32_MAX, Math.floor(timeoutMs)));
        return this.raw.nextEvent(t) ?? null;
    }

    /** Sends a REFER (a target string or a `referRequest` object); returns a `Refer` to follow. */
    sipRefer(request) {
        return new Refer(hostCall(CallError, () => this.raw.sipRefer(referRequest(request))));
    }

    /** Accepts an inbound REFER and returns the new call once the target answered. */
    acceptRefer(requestId) {
        return new Call(hostCall(CallError, () => this.raw.acceptRefer(requestId)));
    }

    /** A header field of the INVITE that started the call, or null. */
    header(name) {
        return findHeader(this.info().headers, name);
    }

    /** Answers a request nothing in particular expects: INFO, MESSAGE, NOTIFY and OPTIONS get 200, anything
     * else 501; 200s are also queued to the hook in variable `ROUTINE_REQUEST_HOOK`, if any. */
    answerRoutineRequest(request) {
        const routine = ["INFO", "MESSAGE", "NOTIFY", "OPTIONS"].includes(request.method);
        try {
            this.respond(request.id, routine ? 200 : 501);
        } catch {
            // as the Rust SDK: a failed answer is not the caller's problem
        }
        let hook = null;
        const text = variables.get(ROUTINE_REQUEST_HOOK);
        if (text !== null) {
            try {
                hook = Hook.fromJson(JSON.parse(text));
            } catch {
                hook = null;
            }
        }
        if (routine && hook) {
            const payload = jambonzCallFields(this.info(), "in-progress");
            const headers = {};
            for (const h of request.headers) headers[h.name.toLowerCase()] = h.value;
            payload.sip_method = request.method;
            payload.sip_headers = headers;
            payload.sip_body = bodyText(request.body);
            try {
                hooks.notify(hook, payload);
            } catch (error) {
                log.warn(`sipRequestWithinDialogHook ${hook.url} not queued: ${error.message}`);
            }
        }
    }

    /** True when the call has ended; reads the queued events without waiting, answering routine requests. */
    hasEnded() {
        for (;;) {
            const event = this.nextEvent(0);
            if (event === null) return false;
            if (event.tag === "ended") return true;
            if (event.tag === "request") this.answerRoutineRequest(event.val);
        }
    }

    /** Waits up to `timeoutMs` for the call to end, answering routine requests meanwhile; true when it
     * ended. */
    waitForEnd(timeoutMs) {
        const end = clock.nowMs() + timeoutMs;
        for (;;) {
            const now = clock.nowMs();
            if (now >= end) return false;
            const event = this.nextEvent(Math.min(end - now, U32_MAX));
            if (event === null) return false;
            if (event.tag === "ended") return true;
            if (event.tag === "request") this.answerRoutineRequest(event.val);
        }
    }

    /** Waits up to `timeoutMs` for an event that matters to a waiting flow: the end, a request or a REFER
     * (`confirmed` is skipped). null when the time ran out. */
    nextEventUntilEnd(timeoutMs) {
        const deadline = clock.nowMs() + timeoutMs;
        for (;;) {
            const left = Math.max(0, deadline - clock.nowMs());
            if (left === 0) return null;
            const event = this.nextEvent(Math.min(left, U32_MAX));
            if (event === null) return null;
            if (event.tag !== "confirmed") return event;
        }
    }
}

/** Places an outbound call (a target string or a `dialRequest` object) and returns it once answered.
 * Throws `DialError`. */
export function dial(request) {
    return new Call(hostCall(DialError, () => callApi.dial(dialRequest(request))));
}

// ---------------------------------------------------------------------------------------------------------
// Media

/** The host's `call` resource of a `Call` (or the resource itself). */
function rawCall(call) {
    return call instanceof Call ? call.raw : call;
}

/** A WIT `audio-source` from `{say, voice}`, `{url}`, `{file}`, `{silence: ms}`, `{tones: "123"}`,
 * `{ring: "us", ms}` or `{stream: "tone_stream://..."}`; a string is text to speak. */
export function audioSource(source) {
    if (typeof source === "string") source = { say: source };
    if (source.say != null) {
        const voice = { provider: source.provider ?? null, name: source.voice ?? null, language: source.language ?? null };
        return { tag: "say", val: { text: String(source.say), voice } };
    }
    if (source.url != null) return { tag: "url", val: String(source.url) };
    if (source.file != null) return { tag: "file", val: String(source.file) };
    if (source.silence != null) return { tag: "silence", val: Math.min(U32_MAX, source.silence) };
    if (source.tones != null) return { tag: "dtmf-tones", val: String(source.tones) };
    if (source.ring != null) return { tag: "ringback", val: { country: String(source.ring), durationMs: source.ms ?? null } };
    if (source.stream != null) return { tag: "stream", val: String(source.stream) };
    throw new TypeError(`not an audio source: ${JSON.stringify(source)}`);
}

/** Prompts, speech and tones the caller hears, the keys the caller presses, digits we send, recordings and
 * bridges. Methods throw `MediaError`. */
export const media = {
    /** Plays `sources` (one or an array, see `audioSource`) behind what the call plays already; returns the
     * host's `playback` (`.id()`, `.stop()`). Options: `loops` (0: until stopped), `volumeDb`, `bargeIn`. */
    play(call, sources, { loops = null, volumeDb = null, bargeIn = false } = {}) {
        const list = (Array.isArray(sources) ? sources : [sources]).map(audioSource);
        return hostCall(MediaError, () => mediaApi.play(rawCall(call), list, { loops, volumeDb, bargeIn }));
    },
    /** Speaks `text` (options as `play`, plus `voice`). */
    say(call, text, { voice = null, ...options } = {}) {
        return media.play(call, { say: text, voice }, options);
    },
    /** Stops everything the call plays. */
    stopPlayback(call) {
        mediaApi.stopPlayback(rawCall(call));
    },
    /** Sends `digits` (0-9, *, #, A-D; `w` waits 500 ms) as RFC 4733 events, or SIP INFO to a far end that
     * offered no telephone-event. */
    sendDigits(call, digits, durationMs = null) {
        hostCall(MediaError, () => mediaApi.sendDigits(rawCall(call), String(digits), durationMs));
    },
    /** Records the call; returns the host's `recording` (`.id()`, `.stop()`, `.url()`: where the admin API serves it). Options: `direction`
     * ("received", "sent", "both"), `stereo`, `maxMs`, `endOnSilenceMs`, `noInputMs`, `finishOnKeys`, `beep`. */
    record(call, options = {}) {
        const o = {
            direction: options.direction ?? null,
            stereo: Boolean(options.stereo),
            maxMs: options.maxMs ?? null,
            endOnSilenceMs: options.endOnSilenceMs ?? null,
            noInputMs: options.noInputMs ?? null,
            finishOnKeys: options.finishOnKeys ?? null,
            beep: Boolean(options.beep),
        };
        return hostCall(MediaError, () => mediaApi.record(rawCall(call), o));
    },
    /** Bridges the media of two calls: each hears the other. */
    bridge(a, b) {
        hostCall(MediaError, () => mediaApi.bridge(rawCall(a), rawCall(b)));
    },
    /** Ends the call's bridge. */
    unbridge(call) {
        mediaApi.unbridge(rawCall(call));
    },
    /** Waits up to `timeoutMs` (null: no limit) for any of `calls`: `{index, update}` or null. `update` is
     * `{tag: "digit", val: {key, durationMs, source}}`, `{tag: "playback-ended", val: {id, reason,
     * playedMs}}`, `{tag: "digits-sent"}`, `{tag: "recording-ended", val: {id, reason, durationMs}}`, or
     * `{tag: "call", val: callUpdate}` (as `call.wait` gives it). */
    wait(calls, timeoutMs = null) {
        const list = (Array.isArray(calls) ? calls : [calls]).map(rawCall);
        const got = mediaApi.wait(list, timeoutMs == null ? null : Math.min(U32_MAX, timeoutMs));
        return got == null ? null : { index: got[0], update: got[1] };
    },
};

// ---------------------------------------------------------------------------------------------------------
// Verbs

/** Running verbs by name: the built-in ones (`sip:refer`, ...) and any a verb module adds. */
export const dispatch = {
    /** Runs verb `name` with `args` (an object) on `call`; returns its JSON result (null when the verb
     * returned nothing or not JSON). Throws `VerbError`. */
    runVerb(call, name, args = {}) {
        const raw = call instanceof Call ? call.raw : call;
        const result = hostCall(VerbError, () => dispatchApi.run(raw, name, JSON.stringify(args)));
        try {
            return JSON.parse(result);
        } catch {
            return null;
        }
    },
    /** Checks that verb `name` exists and `args` match its schema, without running it. */
    checkVerb(name, args = {}) {
        hostCall(VerbError, () => dispatchApi.check(name, JSON.stringify(args)));
    },
    /** The verbs this call's app can run: `[{name, module, schema}]`. */
    available() {
        return dispatchApi.available();
    },
};

// ---------------------------------------------------------------------------------------------------------
// Documents

/** The JSON type of a value, with its article, for error messages ("a string", "an object"). */
export function kind(value) {
    if (value === null || value === undefined) return "null";
    if (Array.isArray(value)) return "an array";
    return { boolean: "a boolean", number: "a number", string: "a string", object: "an object" }[typeof value] ?? "null";
}

/** `url` resolved against `base` when it is a path (`/next` against `https://a.example/doc` is
 * `https://a.example/next`); anything else as it is. */
export function resolveUrl(url, base) {
    if (!url.startsWith("/") || base == null) return url;
    const scheme = base.indexOf("://");
    const afterScheme = scheme < 0 ? 0 : scheme + 3;
    const slash = base.indexOf("/", afterScheme);
    return (slash < 0 ? base : base.slice(0, slash)) + url;
}

// ---------------------------------------------------------------------------------------------------------
// Exports

/** Text for an error a flow threw. */
function errorText(error) {
    if (typeof error === "string") return error;
    if (error instanceof Error) return error.message || String(error);
    try {
        return JSON.stringify(error);
    } catch {
        return String(error);
    }
}

/** The component's `flow` export from `handler(call, config)`: `export const flow = defineFlow(handler)`.
 * Whatever `handler` throws becomes the flow's error (logged by the host; the call is rejected with 500 if
 * it was not answered). */
export function defineFlow(handler) {
    return {
        handle(rawCall, configText) {
            try {
                handler(new Call(rawCall), new Config(configText));
            } catch (error) {
                throw errorText(error);
            }
        },
    };
}

/** The component's `verbs` export (world `verb`): `export const verbs = defineVerbs([{name, schema}],
 * (call, name, args) => result)`. `schema` may be an object; `args` arrive parsed; the result is sent as
 * JSON. */
export function defineVerbs(specs, run) {
    return {
        listVerbs() {
            return specs.map((s) => ({ name: s.name, schema: typeof s.schema === "string" ? s.schema : JSON.stringify(s.schema ?? {}) }));
        },
        run(rawCall, name, argsText) {
            let args;
            try {
                args = JSON.parse(argsText);
            } catch (error) {
                throw `arguments of ${name} are not JSON: ${error.message}`;
            }
            try {
                const result = run(new Call(rawCall), name, args);
                return JSON.stringify(result === undefined ? null : result);
            } catch (error) {
                throw errorText(error);
            }
        },
    };
}
