"""A DNS target for zones dkimroll cannot write: the operator publishes the records by hand.

`ManualTarget` changes no DNS at all. It cannot see the zone either, so
`present` answers that every record is there: the "published" state is the
operator's promise, and the DNS gate of a rotation (which queries the real
nameservers) is what actually verifies it.

With `export_dir` set, every change rewrites `<export_dir>/<zone>.records.txt`:
the zone-file lines of all records dkimroll wants published in that zone
(ready to paste into a zone file), followed by the values the last change
withdrew, to delete by hand. The file is replaced atomically and only when its
content changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import dns.exception
import dns.name

from keys import render
from providers.atomic import atomic_write, file_lock
from providers.dns.base import TxtRecord
from providers.dns.bindfile import find_block, render_block
from providers.errors import ConfigError, DnsTargetError

__all__ = ["ManualTarget"]


class ManualTarget:
    """Records are deployed by a human; optionally exported to a file per zone."""

    def __init__(self, name: str, export_dir: str | Path | None = None) -> None:
        self.name = name
        self.export_dir = Path(export_dir) if export_dir else None

    def __repr__(self) -> str:
        return f"ManualTarget(name={self.name!r}, export_dir={str(self.export_dir) if self.export_dir else None!r})"

    def export_path(self, zone: str) -> Path | None:
        """`<export_dir>/<zone>.records.txt`, or None without an export directory."""
        if self.export_dir is None:
            return None
        return self.export_dir / f"{_zone_text(zone)}.records.txt"

    def check(self, zone: str, records: Sequence[TxtRecord]) -> list[str]:
        """Nothing can fail: no DNS is written."""
        return []

    def present(self, zone: str, records: Sequence[TxtRecord]) -> list[TxtRecord]:
        """All of `records`: this target cannot look at the zone, so it assumes the operator published them."""
        return list(records)

    def apply(self, zone: str, add: Sequence[TxtRecord], remove: Sequence[TxtRecord]) -> bool:
        """Update the export file (if configured); True if it changed. Never touches DNS."""
        path = self.export_path(zone)
        if path is None:
            return False
        zone_text = _zone_text(zone)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with file_lock(path):
                old = path.read_text("utf-8", "surrogateescape") if path.exists() else None
                records: dict[tuple[str, str], int] = {}
                if old is not None:
                    try:
                        block = find_block(old, zone_text)
                    except ValueError as exc:
                        raise DnsTargetError(self.name, zone_text, f"{path}: {exc}") from None
                    records = dict(block.records) if block else {}
                for record in remove:
                    records.pop((_name(record.name), record.value), None)
                for record in add:
                    records[(_name(record.name), record.value)] = record.ttl
                new = _export_text(zone_text, records, remove)
                if new == old:
                    return False
                atomic_write(path, new.encode("utf-8", "surrogateescape"), mode=0o644)
                return True
        except OSError as exc:
            raise DnsTargetError(self.name, zone_text, f"cannot write {path}: {exc}") from None


def _export_text(zone: str, records: dict[tuple[str, str], int], removed: Sequence[TxtRecord]) -> str:
    lines = [
        f"; TXT records of zone {zone} that dkimroll needs published. dkimroll cannot",
        "; change this zone: copy the block below into the zone (or your DNS provider).",
    ]
    text = "\n".join(lines) + "\n"
    block = render_block(records)
    text += block if block else "; (no records to publish)\n"
    gone = sorted({(_name(r.name), r.value, r.ttl) for r in removed if (_name(r.name), r.value) not in records})
    if gone:
        text += "\n; Delete these by hand (withdrawn by the last change):\n"
        for name, value, ttl in gone:
            for line in render.zone_file(name, ttl, value).split("\n"):
                text += f"; {line}\n"
    return text


def _name(name: str) -> str:
    return dns.name.from_text(name).to_text(omit_final_dot=True).lower()


def _zone_text(zone: str) -> str:
    try:
        text = _name(zone)
    except dns.exception.DNSException as exc:
        raise ConfigError("zone", f"{zone!r} is not a valid DNS name: {exc}") from None
    if "/" in text or "\\" in text or text in ("", "@", ".", ".."):
        raise ConfigError("zone", f"{zone!r} cannot name an export file")
    return text
