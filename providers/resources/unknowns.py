"""Recognise values the engine does not know yet (during preview, before upstream resources exist)."""

from __future__ import annotations

from typing import Any

from pulumi.output import Unknown
from pulumi.runtime import rpc


def is_known(value: Any) -> bool:
    """False when `value` or anything inside it is still unknown."""
    if isinstance(value, Unknown) or value == rpc.UNKNOWN:
        return False
    if isinstance(value, dict):
        return all(is_known(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(is_known(v) for v in value)
    return True
