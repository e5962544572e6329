"""Per-call variables: a string map shared by every module running on the call (flow and verbs)."""

from typing import List, Optional, Tuple

from wit_world.imports import variables as _variables

__all__ = ["get", "set", "remove", "entries"]


def get(name: str) -> Optional[str]:
    """The variable's value, or None."""
    return _variables.get(name)


def set(name: str, value: str) -> None:  # noqa: A001 (the WIT name)
    """Sets a variable."""
    _variables.set(name, value)


def remove(name: str) -> None:
    """Removes a variable (nothing when it is not set)."""
    _variables.remove(name)


def entries() -> List[Tuple[str, str]]:
    """Every variable, as (name, value) pairs."""
    return list(_variables.entries())
