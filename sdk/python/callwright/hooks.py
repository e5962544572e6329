"""Webhooks to the app's servers. Only hosts in the app's `hooks.allow` list are reachable; with a
`hooks.secret` the host signs each request (`Jambonz-Signature`)."""

import json
from typing import Any, Optional, Union

from componentize_py_types import Err
from wit_world.imports import hooks as _hooks

from ._util import dumps, variant_text, warn

__all__ = ["Hook", "HookResponse", "HookError", "BodyEncoding", "hook", "post", "from_json", "send", "notify",
           "send_for_answer"]

Hook = _hooks.Hook
HookResponse = _hooks.HookResponse
BodyEncoding = _hooks.BodyEncoding

_KINDS = {
    _hooks.HookError_NotAllowed: "not-allowed",
    _hooks.HookError_Invalid: "invalid",
    _hooks.HookError_Timeout: "timeout",
    _hooks.HookError_Transport: "transport",
}


class HookError(Exception):
    """A hook was not delivered. `kind`: `not-allowed`, `invalid`, `timeout` or `transport`; `detail`: the
    host's words (None for a timeout); `variant`: the WIT value."""

    def __init__(self, variant: Any):
        self.variant = variant
        self.kind = _KINDS[type(variant)]
        self.detail = getattr(variant, "value", None)
        super().__init__(variant_text(variant))


def hook(url: str, method: Optional[str] = None, username: Optional[str] = None, password: Optional[str] = None,
         encoding: Optional[BodyEncoding] = None) -> Hook:
    """A hook to `url` (method None: POST; encoding None: JSON)."""
    return Hook(url, method, username, password, encoding)


def post(url: str) -> Hook:
    """A POST hook to `url`."""
    return Hook(url, None, None, None, None)


def from_json(value: Any) -> Optional[Hook]:
    """A hook from an app's JSON: a URL string, or `{"url": ..., "method": ..., "username": ...,
    "password": ...}` (jambonz's webhook object). None for anything else."""
    if isinstance(value, str):
        return post(value)
    if not isinstance(value, dict):
        return None

    def text(key: str) -> Optional[str]:
        field = value.get(key)
        return field if isinstance(field, str) else None

    url = text("url")
    if url is None:
        return None
    return Hook(url, text("method"), text("username"), text("password"), None)


HookLike = Union[Hook, str, dict]


def _as_hook(target: HookLike) -> Hook:
    if isinstance(target, Hook):
        return target
    found = from_json(target)
    if found is None:
        raise ValueError(f"not a hook: {target!r}")
    return found


def send(target: HookLike, payload: Any) -> HookResponse:
    """Sends `payload` (JSON-able, or JSON text) and waits for the answer (10 s at most, no retries).
    Raises `HookError`."""
    text = payload if isinstance(payload, str) else dumps(payload)
    try:
        return _hooks.send(_as_hook(target), text)
    except Err as error:
        raise HookError(error.value) from None


def notify(target: HookLike, payload: Any) -> None:
    """Queues `payload` as a status callback: ordered, retried, never blocking the call. Raises `HookError`
    for immediate failures (not allowed, invalid)."""
    text = payload if isinstance(payload, str) else dumps(payload)
    try:
        _hooks.notify(_as_hook(target), text)
    except Err as error:
        raise HookError(error.value) from None


def send_for_answer(target: HookLike, payload: Any, context: str) -> Any:
    """Sends an action hook and returns its JSON answer. None when the hook failed, answered other than 2xx,
    or answered nothing or something that is not JSON; each is logged, prefixed with `context`."""
    target = _as_hook(target)
    try:
        response = send(target, payload)
    except HookError as error:
        warn(f"{context}: hook {target.url} failed: {error}")
        return None
    if not 200 <= response.status < 300:
        warn(f"{context}: hook {target.url} answered {response.status}")
        return None
    if not response.body.strip():
        return None
    try:
        return json.loads(response.body)
    except ValueError as error:
        warn(f"{context}: hook {target.url} answered with invalid JSON: {error}")
        return None
