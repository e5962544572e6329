"""Write callwright call flows in Python.

A flow is a function taking a `Call` and the app's `Config`; `flow(handler)` turns it into the class
componentize-py exports, which the app module must bind to the name `Flow`:

    from callwright import Call, Config, flow

    def handle(call: Call, config: Config) -> None:
        call.answer()
        call.wait_for_end(config.get_int("seconds", 30) * 1000) or call.hangup()

    Flow = flow(handle)

Build with `componentize-py -d wit -w call-flow componentize -p sdk/python -p <app dir> <app module>`. The
host runs one instance per call; calls into the host block until SIP is done, so a flow reads top to bottom.
Failed call operations raise `CallError`; any exception leaving the handler is returned to the host as the
flow's error (logged with the call; an unanswered call is then rejected with 500).
"""

import json
import traceback
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from componentize_py_types import Err
from wit_world.imports import call as _call
from wit_world.imports import log as _log
from wit_world.imports import types as _types

from . import clock, dispatch, hooks, media, transfer, variables
from ._util import dumps, variant_text
from .transfer import Refer, ReferReport, jambonz_call_fields

try:  # the exports of world `verb`, present only when building a verb module
    from wit_world.exports import verbs as _verb_exports
except ImportError:
    _verb_exports = None

__all__ = [
    "Call", "CallError", "CallEnded", "InvalidState", "InvalidArgument", "CallTimeout", "OtherCallError",
    "DialError", "FlowError", "Config", "flow", "verbs", "VerbSpec", "dial", "refer_request", "dial_request",
    "log", "Level", "Header", "Body", "Credentials", "Direction", "CallInfo", "IncomingRequest", "InboundRefer",
    "SipResponse", "ReferRequest", "DialRequest", "Ended", "Request", "Confirmed", "ReferRequested",
    "end_reason_name", "Refer", "ReferReport", "jambonz_call_fields", "ROUTINE_REQUEST_HOOK", "bindings",
    "clock", "dispatch", "hooks", "media", "transfer", "variables", "dumps", "describe",
]

#: A WIT value as the Rust bindings' `Debug` shows it, e.g. `ReferOutcome::Success(200)` (for logs).
describe = variant_text


class bindings:
    """The generated bindings (`wit_world.imports.*`), for anything the helpers here do not cover."""

    call = _call
    types = _types
    log = _log
    hooks = hooks._hooks
    variables = variables._variables
    clock = clock._clock
    dispatch = dispatch._dispatch
    media = media._media


# The WIT records and enums, under their WIT names.
Header = _types.Header
Body = _types.Body
Credentials = _types.Credentials
Direction = _types.Direction
Level = _log.Level
CallInfo = _call.CallInfo
IncomingRequest = _call.IncomingRequest
InboundRefer = _call.InboundRefer
SipResponse = _call.SipResponse
ReferRequest = _call.ReferRequest
DialRequest = _call.DialRequest

# What `Call.next_event` returns (dataclasses: `match event: case Ended(reason): ...`).
Ended = _call.CallEvent_Ended
Request = _call.CallEvent_Request
Confirmed = _call.CallEvent_Confirmed
ReferRequested = _call.CallEvent_Refer

#: The call variable holding a hook (JSON) that routine in-dialog requests are posted to; see
#: `Call.answer_routine_request`.
ROUTINE_REQUEST_HOOK = "jambonz.sip_request_hook"

_U32_MAX = 0xFFFFFFFF

_END_REASONS = {
    _call.EndReason_RemoteHangup: "remote-hangup",
    _call.EndReason_LocalHangup: "local-hangup",
    _call.EndReason_Cancelled: "cancelled",
    _call.EndReason_NoAck: "no-ack",
    _call.EndReason_Rejected: "rejected",
    _call.EndReason_Failed: "failed",
}


def end_reason_name(reason: Any) -> str:
    """`remote-hangup`, `local-hangup`, `cancelled`, `no-ack`, `rejected` or `failed` (the last two carry the
    status in `reason.value`)."""
    return _END_REASONS[type(reason)]


# ---------------------------------------------------------------------------------------------- errors


class CallError(Exception):
    """A call operation failed. `variant` is the WIT `call-error` value; `kind` its case (`call-ended`,
    `invalid-state`, `invalid-argument`, `timeout`, `other`) and `detail` its text, if any. `str()` reads as
    the Rust SDK's error text (e.g. `CallError::InvalidState("already answered")`). Each case has its own
    subclass: `CallEnded`, `InvalidState`, `InvalidArgument`, `CallTimeout`, `OtherCallError`."""

    kind = "call-error"

    def __init__(self, variant: Any):
        self.variant = variant
        self.detail: Optional[str] = getattr(variant, "value", None)
        super().__init__(variant_text(variant))

    @staticmethod
    def of(variant: Any) -> "CallError":
        """The exception for a WIT `call-error` value."""
        return _CALL_ERRORS.get(type(variant), CallError)(variant)


class CallEnded(CallError):
    """The call is over (the far end hung up, or the call was torn down)."""

    kind = "call-ended"


class InvalidState(CallError):
    """The call is not in a state where this makes sense (e.g. answering twice)."""

    kind = "invalid-state"


class InvalidArgument(CallError):
    """An argument was refused (a status code out of range, a header the host owns, ...)."""

    kind = "invalid-argument"


class CallTimeout(CallError):
    """No answer came in time."""

    kind = "timeout"


class OtherCallError(CallError):
    """Anything else, described in `detail`."""

    kind = "other"


_CALL_ERRORS = {
    _types.CallError_CallEnded: CallEnded,
    _types.CallError_InvalidState: InvalidState,
    _types.CallError_InvalidArgument: InvalidArgument,
    _types.CallError_Timeout: CallTimeout,
    _types.CallError_Other: OtherCallError,
}


class DialError(Exception):
    """An outbound call did not connect. `kind`: `failed` (`status` set), `timeout`, `invalid-argument` or
    `other` (`detail` set); `variant`: the WIT value."""

    def __init__(self, variant: Any):
        self.variant = variant
        self.kind = {
            _call.DialError_Failed: "failed",
            _call.DialError_Timeout: "timeout",
            _call.DialError_InvalidArgument: "invalid-argument",
            _call.DialError_Other: "other",
        }[type(variant)]
        value = getattr(variant, "value", None)
        self.status: Optional[int] = value if isinstance(value, int) else None
        self.detail: Optional[str] = value if isinstance(value, str) else None
        super().__init__(variant_text(variant))


class FlowError(Exception):
    """Raise to end the flow with this message as its error (no traceback attached)."""


# ---------------------------------------------------------------------------------------------- helpers

HeadersLike = Union[None, Dict[str, str], Iterable[Union["_types.Header", Tuple[str, str]]]]
BodyLike = Union[None, "_types.Body", Tuple[str, Union[str, bytes]]]
CredentialsLike = Union[None, "_types.Credentials", Tuple[str, str]]


def _headers(headers: HeadersLike) -> List["_types.Header"]:
    if headers is None:
        return []
    if isinstance(headers, dict):
        return [Header(name, value) for name, value in headers.items()]
    return [h if isinstance(h, Header) else Header(h[0], h[1]) for h in headers]


def _body(body: BodyLike) -> Optional["_types.Body"]:
    if body is None or isinstance(body, Body):
        return body
    content_type, data = body
    return Body(content_type, data.encode() if isinstance(data, str) else bytes(data))


def _credentials(credentials: CredentialsLike) -> Optional["_types.Credentials"]:
    if credentials is None or isinstance(credentials, Credentials):
        return credentials
    return Credentials(credentials[0], credentials[1])


def _timeout(ms: Optional[int]) -> Optional[int]:
    return None if ms is None else max(0, min(int(ms), _U32_MAX))


def refer_request(target: str, *, referred_by: Optional[str] = None, headers: HeadersLike = None,
                  credentials: CredentialsLike = None, no_refer_sub: bool = False, replaces: Optional[str] = None,
                  timeout_ms: Optional[int] = None) -> "_call.ReferRequest":
    """A REFER to `target` (SIP or tel URI, or a number). The defaults: Referred-By the transferred party, an
    implicit subscription, 15 s for the final NOTIFY."""
    return ReferRequest(target, referred_by, _headers(headers), _credentials(credentials), bool(no_refer_sub),
                        replaces, _timeout(timeout_ms))


def dial_request(target: str, *, from_: Optional[str] = None, headers: HeadersLike = None, body: BodyLike = None,
                 credentials: CredentialsLike = None, timeout_ms: Optional[int] = None,
                 transport: Optional[str] = None) -> "_call.DialRequest":
    """An outbound call to `target`. The defaults: our address as From, the host's SDP offer, UDP, 30 s."""
    return DialRequest(target, from_, _headers(headers), _body(body), _credentials(credentials),
                       _timeout(timeout_ms), transport)


def _wrap(operation: Callable[..., Any], *args: Any) -> Any:
    try:
        return operation(*args)
    except Err as error:
        raise CallError.of(error.value) from None


# ---------------------------------------------------------------------------------------------- the call


class Call:
    """One SIP call. Every method that can fail raises a `CallError` subclass. `raw` is the generated
    binding's `call` resource."""

    def __init__(self, raw: "_call.Call"):
        self.raw = raw

    def info(self) -> "_call.CallInfo":
        """Facts about the call (ids, From/To, user parts, direction, headers, body, remote address)."""
        return self.raw.info()

    def ring(self, status: int = 180, headers: HeadersLike = None, body: BodyLike = None) -> None:
        """Sends a provisional response (180 Ringing, 183 Session Progress) to an inbound call."""
        _wrap(self.raw.ring, status, _headers(headers), _body(body))

    def answer(self, headers: HeadersLike = None, body: BodyLike = None) -> None:
        """Answers an inbound call with 200 OK and `body` (an SDP answer); no body: the host answers the
        caller's offer itself."""
        _wrap(self.raw.answer, _headers(headers), _body(body))

    def reject(self, status: int, reason: Optional[str] = None, headers: HeadersLike = None) -> None:
        """Rejects an inbound call that is not answered yet (status 300-699)."""
        _wrap(self.raw.reject, status, reason, _headers(headers))

    def hangup(self) -> None:
        """Hangs up: BYE when up, CANCEL or 480 before the answer. Returns once the far end has been told."""
        _wrap(self.raw.hangup)

    def sip_request(self, method: str, headers: HeadersLike = None, body: BodyLike = None) -> "_call.SipResponse":
        """Sends INFO, MESSAGE, NOTIFY, OPTIONS or UPDATE inside the call; returns the final response."""
        return _wrap(self.raw.sip_request, method, _headers(headers), _body(body))

    def respond(self, request_id: int, status: int, headers: HeadersLike = None, body: BodyLike = None) -> None:
        """Answers a request from a `Request` event (or declines a `ReferRequested` one)."""
        _wrap(self.raw.respond, request_id, status, _headers(headers), _body(body))

    def next_event(self, timeout_ms: Optional[int] = None) -> Any:
        """Waits for the next event, up to `timeout_ms` (None: no limit): `Ended(reason)`, `Request(request)`,
        `Confirmed()` or `ReferRequested(refer)`. None when the time ran out."""
        return self.raw.next_event(_timeout(timeout_ms))

    def sip_refer(self, target: Union[str, "_call.ReferRequest"], **options: Any) -> Refer:
        """Sends a REFER on an answered call: `target` is a URI or number (`options` as for `refer_request`),
        or a whole `ReferRequest`. Follow it with `Refer.follow()`."""
        request = target if isinstance(target, ReferRequest) else refer_request(target, **options)
        return Refer(_wrap(self.raw.sip_refer, request))

    def accept_refer(self, request_id: int) -> "Call":
        """Accepts an inbound REFER: answers 202, calls the target and reports progress to the referrer as
        NOTIFYs. Returns the new call once the target answered."""
        return Call(_wrap(self.raw.accept_refer, request_id))

    # Helpers, as in the Rust SDK.

    def answer_if_needed(self) -> None:
        """Answers the call unless it is answered already: an answered call stays as it is."""
        try:
            self.answer()
        except InvalidState:
            pass

    def answer_routine_request(self, request: "_call.IncomingRequest") -> None:
        """Answers a request nothing in particular expects: INFO, MESSAGE, NOTIFY and OPTIONS get 200, anything
        else 501. When the call variable `ROUTINE_REQUEST_HOOK` holds a hook, each request answered 200 is also
        queued to it: the call's jambonz fields with `sip_method`, `sip_headers` and `sip_body`."""
        routine = request.method in ("INFO", "MESSAGE", "NOTIFY", "OPTIONS")
        try:
            self.respond(request.id, 200 if routine else 501)
        except CallError:
            pass
        if not routine:
            return
        text = variables.get(ROUTINE_REQUEST_HOOK)
        try:
            hook = hooks.from_json(json.loads(text)) if text is not None else None
        except ValueError:
            hook = None
        if hook is None:
            return
        payload = jambonz_call_fields(self.info(), "in-progress")
        payload["sip_method"] = request.method
        payload["sip_headers"] = {h.name.lower(): h.value for h in request.headers}
        payload["sip_body"] = request.body.data.decode("utf-8", "replace") if request.body is not None else ""
        try:
            hooks.notify(hook, payload)
        except hooks.HookError as error:
            log.warn(f"sipRequestWithinDialogHook {hook.url} not queued: {error}")

    def has_ended(self) -> bool:
        """True when the call has ended. Reads the events already queued without waiting, answering routine
        requests among them."""
        while True:
            event = self.next_event(0)
            if event is None:
                return False
            if isinstance(event, Ended):
                return True
            if isinstance(event, Request):
                self.answer_routine_request(event.value)

    def wait_for_end(self, timeout_ms: int) -> bool:
        """Waits up to `timeout_ms` for the call to end, answering routine requests meanwhile. True when it
        ended."""
        end = clock.now_ms() + timeout_ms
        while True:
            now = clock.now_ms()
            if now >= end:
                return False
            event = self.next_event(end - now)
            if event is None:
                return False
            if isinstance(event, Ended):
                return True
            if isinstance(event, Request):
                self.answer_routine_request(event.value)

    def next_event_until_end(self, timeout_ms: int) -> Any:
        """Waits up to `timeout_ms` for an event that matters to a flow waiting on the call: `Ended`, or a
        `Request` / `ReferRequested` from the far end (`Confirmed` is skipped). None when the time ran out."""
        deadline = clock.now_ms() + timeout_ms
        while True:
            left = deadline - clock.now_ms()
            if left <= 0:
                return None
            event = self.next_event(left)
            if event is None:
                return None
            if not isinstance(event, Confirmed):
                return event

    def header(self, name: str) -> Optional[str]:
        """A header field of the INVITE that started the call (case-insensitive name)."""
        wanted = name.lower()
        return next((h.value for h in self.info().headers if h.name.lower() == wanted), None)

    def jambonz_fields(self, call_status: str = "in-progress") -> Dict[str, Any]:
        """`jambonz_call_fields(self.info(), call_status)`."""
        return jambonz_call_fields(self.info(), call_status)

    def close(self) -> None:
        """Releases the resource (the flow wrapper does this when the handler returns)."""
        self.raw.__exit__(None, None, None)

    def __enter__(self) -> "Call":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def dial(target: Union[str, "_call.DialRequest"], **options: Any) -> Call:
    """Places an outbound call (`options` as for `dial_request`) and waits until it is answered. The new call
    belongs to this guest: the host hangs it up when the guest ends. Raises `DialError`."""
    request = target if isinstance(target, DialRequest) else dial_request(target, **options)
    try:
        return Call(_call.dial(request))
    except Err as error:
        raise DialError(error.value) from None


# ---------------------------------------------------------------------------------------------- config, log


class Config(dict):
    """The app's `flow.config` JSON. A dict of its fields when it is an object (empty otherwise; `value` holds
    whatever it was, None for invalid JSON). The typed getters return `default` when the field is missing or
    of another type, as the Rust SDK's `Config` does."""

    def __init__(self, value: Any = None):
        super().__init__(value if isinstance(value, dict) else {})
        self.value = value

    @classmethod
    def parse(cls, text: str) -> "Config":
        """Parses the JSON the host passes; invalid JSON becomes None."""
        try:
            return cls(json.loads(text))
        except ValueError:
            return cls(None)

    def get_str(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """A string field."""
        value = self.get(key)
        return value if isinstance(value, str) else default

    def get_int(self, key: str, default: Optional[int] = None) -> Optional[int]:
        """A non-negative integer field (Rust's `get_u64`: no floats, booleans or strings)."""
        value = self.get(key)
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64
        return value if ok else default

    def get_bool(self, key: str, default: Optional[bool] = None) -> Optional[bool]:
        """A boolean field."""
        value = self.get(key)
        return value if isinstance(value, bool) else default

    def get_list(self, key: str) -> List[Any]:
        """An array field ([] when missing or not an array)."""
        value = self.get(key)
        return value if isinstance(value, list) else []

    def get_dict(self, key: str) -> Dict[str, Any]:
        """An object field ({} when missing or not an object)."""
        value = self.get(key)
        return value if isinstance(value, dict) else {}


class _Log:
    """`log(level, message)`, or `log.info(message)` etc.: the runtime's log, tagged with the call."""

    _LEVELS = {"trace": Level.TRACE, "debug": Level.DEBUG, "info": Level.INFO, "warn": Level.WARN,
               "warning": Level.WARN, "error": Level.ERROR}

    def __call__(self, level: Union[str, "_log.Level"], message: str) -> None:
        _log.log(self._LEVELS[level] if isinstance(level, str) else level, message)

    def trace(self, message: str) -> None:
        _log.log(Level.TRACE, message)

    def debug(self, message: str) -> None:
        _log.log(Level.DEBUG, message)

    def info(self, message: str) -> None:
        _log.log(Level.INFO, message)

    def warn(self, message: str) -> None:
        _log.log(Level.WARN, message)

    warning = warn

    def error(self, message: str) -> None:
        _log.log(Level.ERROR, message)


log = _Log()


# ---------------------------------------------------------------------------------------------- exports


def _error_text(error: BaseException) -> str:
    if isinstance(error, (FlowError, CallError, DialError, hooks.HookError, dispatch.VerbError)):
        return str(error)
    return "".join(traceback.format_exception(error)).rstrip()


def flow(handler: Callable[[Call, Config], Any]) -> type:
    """The class componentize-py exports for world `call-flow`; bind it to `Flow` in the app module:
    `Flow = flow(handle)`. `handler(call, config)` runs the call; when it returns, the host hangs up if the
    call is still up. An exception it raises becomes the flow's error (`FlowError`, `CallError`: their
    message; anything else: its traceback)."""

    class Flow:
        def handle(self, call: "_call.Call", config: str) -> None:
            wrapped = Call(call)
            try:
                handler(wrapped, Config.parse(config))
            except Err:
                raise
            except Exception as error:  # noqa: BLE001 (every error goes back to the host)
                raise Err(_error_text(error)) from None
            finally:
                try:
                    wrapped.close()
                except Exception:  # noqa: BLE001 (already released by the handler)
                    pass

    Flow.__qualname__ = Flow.__name__ = "Flow"
    Flow.__doc__ = handler.__doc__
    return Flow


class VerbSpec:
    """A verb a verb module implements: its name and the JSON schema (a dict or JSON text) of its arguments."""

    def __init__(self, name: str, schema: Any = None):
        self.name = name
        self.schema = schema if isinstance(schema, str) else dumps({"type": "object"} if schema is None else schema)


def verbs(specs: Iterable[VerbSpec], run: Callable[[Call, str, Any], Any]) -> type:
    """The class componentize-py exports for world `verb`; bind it to `Verbs` in the app module:
    `Verbs = verbs([VerbSpec("greet")], run)`. `run(call, name, args)` gets the JSON arguments parsed and
    returns a JSON-able result; an exception becomes the verb's error."""
    specs = list(specs)

    class Verbs:
        def list_verbs(self) -> list:
            return [_verb_exports.VerbSpec(spec.name, spec.schema) for spec in specs]

        def run(self, call: "_call.Call", name: str, args: str) -> str:
            try:
                parsed = json.loads(args)
            except ValueError as error:
                raise Err(f"arguments of {name} are not JSON: {error}") from None
            try:
                return dumps(run(Call(call), name, parsed))
            except Err:
                raise
            except Exception as error:  # noqa: BLE001
                raise Err(_error_text(error)) from None

    Verbs.__qualname__ = Verbs.__name__ = "Verbs"
    return Verbs
