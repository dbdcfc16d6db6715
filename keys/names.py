"""Domain names as dkimroll stores them: IDNA 2008 A-labels, lower case, no trailing dot.

One canonical spelling means a Unicode and an A-label spelling of the same
domain in a stack file cannot produce two records or a spurious diff.
"""

from __future__ import annotations

import re

import dns.exception
import dns.name

from providers import errors

MAX_NAME = 253
MAX_LABEL = 63

_DNS_LABEL = re.compile(r"[a-z0-9_-]+")  # what may appear unescaped, incl. "_domainkey"
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def to_a_label(domain: str) -> str:
    """`domain` (Unicode or ASCII, trailing dot optional) as lower-case A-labels without trailing dot."""
    key = f"domain {domain!r}"
    if "\\" in domain:
        # dnspython would read "\\200" as the character U+00C8 and quietly IDNA-encode it.
        raise errors.ConfigError(key, "backslash escapes are not allowed; write the name itself")
    try:
        name = dns.name.from_unicode(domain.strip(), idna_codec=dns.name.IDNA_2008)
    except dns.exception.DNSException as exc:
        raise errors.ConfigError(key, f"not a valid domain name: {exc}") from None
    labels = [label.decode("latin-1").lower() for label in name.labels if label]
    if not labels:
        raise errors.ConfigError(key, "is empty")
    for label in labels:
        if not _DNS_LABEL.fullmatch(label):
            raise errors.ConfigError(key, f"label {label!r} has characters not allowed in a domain name")
    return ".".join(labels)


def validate_domain(name: str) -> str:
    """The A-label form of `name` if it is a registrable-style host name (>= 2 labels), else ConfigError."""
    a_label = to_a_label(name)
    key = f"domain {name!r}"
    labels = a_label.split(".")
    if len(labels) < 2:
        raise errors.ConfigError(key, "needs at least two labels (e.g. example.com)")
    if len(a_label) > MAX_NAME:
        raise errors.ConfigError(key, f"is longer than {MAX_NAME} characters")
    for label in labels:
        if len(label) > MAX_LABEL:
            raise errors.ConfigError(key, f"label {label[:20]!r}... is longer than {MAX_LABEL} characters")
        if not _HOST_LABEL.fullmatch(label):
            raise errors.ConfigError(key, f"label {label!r} must be letters, digits and inner hyphens only")
    return a_label
