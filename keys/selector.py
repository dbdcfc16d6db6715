"""Selector templates such as "{yyyy}{mm}-{alg}", and the DNS rules every selector must meet.

A template with a date or counter placeholder yields a new selector per
rotation; the result is checked here so a bad template fails at plan time,
not when a DNS backend rejects the name mid-apply.
"""

from __future__ import annotations

import datetime
import re

from providers import errors

ROTATING_PLACEHOLDERS: frozenset[str] = frozenset({"yyyy", "mm", "dd", "n"})
PLACEHOLDERS: frozenset[str] = ROTATING_PLACEHOLDERS | {"signer", "alg"}
MAX_LABEL = 63
MAX_SELECTOR = 253 - len("._domainkey.") - 3  # leave room for at least "a.b" after it

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def render_selector(
    template: str,
    when: datetime.datetime,
    signer: str | None = None,
    alg: str | None = None,
    n: int = 1,
) -> str:
    """The selector `template` gives at `when` (UTC if aware), for this signer, algorithm and counter."""
    key = f"selector template {template!r}"
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise errors.ConfigError(key, f"counter {{n}} must be a non-negative integer, got {n!r}")
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc)
    values: dict[str, str | None] = {
        "yyyy": f"{when.year:04d}",
        "mm": f"{when.month:02d}",
        "dd": f"{when.day:02d}",
        "signer": signer,
        "alg": alg,
        "n": str(n),
    }

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in PLACEHOLDERS:
            raise errors.ConfigError(
                key, f"unknown placeholder {{{name}}}; use {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}"
            )
        value = values[name]
        if value is None:
            raise errors.ConfigError(key, f"uses {{{name}}} but no {name} was given")
        return value

    result = _PLACEHOLDER.sub(substitute, template)
    if "{" in result or "}" in result:
        raise errors.ConfigError(key, "has an unbalanced '{' or '}'")
    problem = _selector_problem(result.lower())
    if problem:
        raise errors.ConfigError(key, f"gives {result!r}, which is not a valid selector: {problem}")
    return result.lower()


def is_template(template: str) -> bool:
    """True when the template contains a date or counter placeholder, i.e. it rotates."""
    return any(name in ROTATING_PLACEHOLDERS for name in _PLACEHOLDER.findall(template))


def validate_selector(sel: str) -> str:
    """`sel` lower-cased if it is a valid selector (dot-separated LDH labels), else ConfigError."""
    problem = _selector_problem(sel.lower())
    if problem:
        raise errors.ConfigError("selector", f"{sel!r} is not a valid selector: {problem}")
    return sel.lower()


def _selector_problem(sel: str) -> str | None:
    """Why `sel` (already lower case) is not a valid RFC 6376 selector, or None."""
    if not sel:
        return "it is empty"
    if len(sel) > MAX_SELECTOR:
        return f"it is longer than {MAX_SELECTOR} characters"
    for label in sel.split("."):
        if not label:
            return "it has an empty label (leading, trailing or double dot)"
        if len(label) > MAX_LABEL:
            return f"label {label[:20]!r}... is longer than {MAX_LABEL} characters"
        if not _LABEL.fullmatch(label):
            return f"label {label!r} must be letters, digits and inner hyphens only"
    return None
