"""Running verbs by name: the built-in ones (`sip:refer`, `sip_refer`, ...) and any a verb module adds."""

import json
from typing import Any, List

from componentize_py_types import Err
from wit_world.imports import dispatch as _dispatch

from ._util import dumps, variant_text

__all__ = ["VerbError", "VerbInfo", "run_verb", "check_verb", "available"]

VerbInfo = _dispatch.VerbInfo

_KINDS = {
    _dispatch.VerbError_UnknownVerb: "unknown-verb",
    _dispatch.VerbError_InvalidArguments: "invalid-arguments",
    _dispatch.VerbError_Failed: "failed",
}


class VerbError(Exception):
    """A verb did not run, or failed. `kind`: `unknown-verb`, `invalid-arguments` or `failed`; `message`:
    the host's words (naming the verb and, for bad arguments, the field); `variant`: the WIT value."""

    def __init__(self, variant: Any):
        self.variant = variant
        self.kind = _KINDS[type(variant)]
        self.message = variant.value
        super().__init__(variant_text(variant))


def run_verb(call: Any, name: str, args: Any = None) -> Any:
    """Runs verb `name` with `args` (JSON-able, or JSON text) on `call` and returns its JSON result (None when
    the verb returned nothing or text that is not JSON). Raises `VerbError`."""
    text = args if isinstance(args, str) else dumps({} if args is None else args)
    try:
        result = _dispatch.run(getattr(call, "raw", call), name, text)
    except Err as error:
        raise VerbError(error.value) from None
    try:
        return json.loads(result)
    except ValueError:
        return None


def check_verb(name: str, args: Any = None) -> None:
    """Checks that verb `name` exists and `args` match its schema, without running it. Raises `VerbError`."""
    text = args if isinstance(args, str) else dumps({} if args is None else args)
    try:
        _dispatch.check(name, text)
    except Err as error:
        raise VerbError(error.value) from None


def available() -> List[VerbInfo]:
    """The verbs this call's app can run, sorted by name."""
    return list(_dispatch.available())
