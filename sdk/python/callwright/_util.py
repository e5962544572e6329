"""Helpers shared by the SDK's modules."""

import json
from typing import Any

from wit_world.imports import log as _log


def dumps(value: Any) -> str:
    """JSON text the way the Rust SDK (serde_json) writes it: compact, keys sorted, UTF-8 unescaped."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def variant_text(value: Any) -> str:
    """A WIT variant as the Rust bindings' `Debug` shows it, e.g. `ReferOutcome::Success(200)`."""
    name = type(value).__name__
    type_name, _, case = name.partition("_")
    text = f"{type_name}::{case}" if case else name
    if hasattr(value, "value"):
        inner = value.value
        if isinstance(inner, str):
            shown = json.dumps(inner, ensure_ascii=False)
        elif hasattr(type(inner), "__dataclass_fields__"):
            shown = variant_text(inner)
        else:
            shown = str(inner)
        text += f"({shown})"
    return text


def warn(message: str) -> None:
    _log.log(_log.Level.WARN, message)
