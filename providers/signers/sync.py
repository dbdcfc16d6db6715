"""The push algorithm shared by every signer layout and transport.

`sync` makes a host hold exactly the files a layout renders for a set of keys:
it checks (and creates) the directories, writes only what differs, removes the
files it wrote before that are no longer wanted, and reloads the signer only
when something changed.

Digests
-------
A file's digest is `"<sha256 hex of content>:<mode as 4 octal digits>:<owner>:<group>"`,
for example `"9f86d0…:0600:opendkim:opendkim"`. Transports report the actual
owner and group names (the numeric id when the id has no name). The digest a
`ManagedFile` wants (`wanted_digest`) puts `*` for an owner or group it leaves
unset, and `digest_matches` treats `*` as "anything", so a file whose owner
dkimroll does not manage is not rewritten over it. A mode or owner change on the
host therefore shows as a different digest, and is repaired by the next sync.

Digests become Pulumi outputs: they hold a sha256 of the content, never the
content itself.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from providers.errors import SignerError
from providers.signers.base import ManagedFile, SignerLayout, SigningKey, Transport

ANY = "*"

# Mode of directories `sync` has to create. Key directories get 0711: nobody can
# list them, but the OpenDKIM user can reach its key file by the path the
# KeyTable gives, whoever owns the directory (a transport creates directories as
# its own user, and the protocol has no chown for them). Table directories get
# the usual 0755 of /etc. Existing directories keep their mode; they are only
# checked.
KEY_DIR_MODE = 0o711
TABLE_DIR_MODE = 0o755


def file_digest(content: bytes, mode: int, owner: str, group: str) -> str:
    """The digest of a file as it is on a host. Used by transports."""
    return f"{hashlib.sha256(content).hexdigest()}:{mode & 0o7777:04o}:{owner}:{group}"


def wanted_digest(file: ManagedFile) -> str:
    """The digest `file` should have on the host; `*` for an owner/group left unset."""
    return file_digest(
        file.content,
        file.mode,
        file.owner if file.owner is not None else ANY,
        file.group if file.group is not None else ANY,
    )


def digest_matches(current: str | None, wanted: str) -> bool:
    """Whether a host's digest satisfies a wanted one (`*` fields match anything)."""
    if current is None:
        return False
    have = current.split(":")
    want = wanted.split(":")
    if len(have) != 4 or len(want) != 4:
        return False
    return all(w == ANY or h == w for h, w in zip(have, want))


@dataclass(frozen=True)
class SyncResult:
    written: tuple[str, ...]
    removed: tuple[str, ...]
    reloaded: bool
    digests: dict[str, str]  # path -> digest on the host after the sync, wanted files only

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


def _dir_plan(layout: SignerLayout, files: Sequence[ManagedFile]) -> list[tuple[str, int]]:
    """Directories to ensure, parents before children, with the mode for creation."""
    modes: dict[str, int] = {}
    for f in files:
        modes.setdefault(posixpath.dirname(f.path), TABLE_DIR_MODE)
    for d in layout.key_dirs():
        modes[posixpath.normpath(d)] = KEY_DIR_MODE
    return sorted(modes.items())


def sync(
    transport: Transport,
    layout: SignerLayout,
    keys: Sequence[SigningKey],
    previous_paths: Iterable[str],
    reload: str | None,
    *,
    previous_digests: Mapping[str, str] | None = None,
) -> SyncResult:
    """Make the host hold exactly `layout.files(keys)`; see the module docstring.

    Order matters for a signer reading its tables while we write: key files are
    written before the tables that name them, and stale files (old keys, an
    Ed25519 table set no longer needed) are removed only after the new tables
    are in place. Each file is replaced atomically by the transport.

    `previous_digests` (optional) are the digests the last successful sync
    returned. When given, a host whose files differ from them is reloaded even if
    this sync had nothing to write: that is the case when the last sync wrote the
    files but its reload failed, so the retry still reloads.
    """
    files = layout.files(keys)
    by_path: dict[str, ManagedFile] = {}
    for f in files:
        if not posixpath.isabs(f.path):
            raise SignerError(transport.name, "layout produced a relative path", f.path)
        if f.path in by_path:
            raise SignerError(transport.name, "layout produced the same path twice", f.path)
        by_path[f.path] = f

    # 1. Every directory must be safe before anything is written.
    for directory, mode in _dir_plan(layout, files):
        transport.ensure_safe_dir(directory, mode)

    # 2. What is there now.
    stale = sorted({p for p in previous_paths if p not in by_path})
    for p in stale:
        if not posixpath.isabs(p):
            raise SignerError(transport.name, "refusing to remove a relative path", p)
    current = transport.digests(list(by_path) + stale)

    # 3. Write what differs: keys first, then tables.
    ordered = sorted(files, key=lambda f: (not f.secret, f.path))
    written: list[str] = []
    for f in ordered:
        if not digest_matches(current.get(f.path), wanted_digest(f)):
            transport.write(f)
            written.append(f.path)

    # 4. Check what was written landed as wanted (a silently ignored chown, say).
    after = dict(current)
    if written:
        after.update(transport.digests(written))
        for p in written:
            if not digest_matches(after.get(p), wanted_digest(by_path[p])):
                raise SignerError(
                    transport.name,
                    "after writing, the file's content, mode or owner is not the one written",
                    p,
                )

    # 5. Remove what is no longer wanted (and is still there).
    removed: list[str] = []
    for p in stale:
        if current.get(p) is not None:
            transport.remove(p)
            removed.append(p)

    digests: dict[str, str] = {}
    for p in by_path:
        d = after.get(p)
        if d is None:  # pragma: no cover - write succeeded, so the file exists
            raise SignerError(transport.name, "file missing after sync", p)
        digests[p] = d

    # 6. On change (or when the last reload may not have happened): test the signer's
    #    configuration where the host has the tool for it, then reload.
    reloaded = False
    unacknowledged = previous_digests is not None and dict(previous_digests) != digests
    if written or removed or unacknowledged:
        config_test = getattr(layout, "config_test", None)
        command = config_test() if config_test is not None else None
        if command:
            try:
                transport.run(command, privileged=False)
            except SignerError as exc:
                raise SignerError(transport.name, "the signer's configuration test failed, so it was not "
                                  f"reloaded: {exc.detail}") from None
        if reload:
            transport.run(reload)
            reloaded = True

    return SyncResult(tuple(written), tuple(removed), reloaded, digests)


def inspect(transport: Transport, paths: Iterable[str]) -> dict[str, str | None]:
    """Current digests of `paths` on the host (None when absent), for refresh."""
    return transport.digests(list(paths))
