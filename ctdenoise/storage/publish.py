"""Folders that appear whole or not at all: built under a hidden name beside their target,
then renamed into place.

A reader that lists the parent (a model server watching its versions, `denoise --model
latest`, a user) never sees a half-written folder: while it is built it is hidden and its
name is not a version, and a failure or a kill leaves at most that hidden folder, which the
next publish of the same name into the same parent removes once its owner is gone (a killed
publish of a name nobody publishes again leaves its hidden folder behind). Locally the final
rename is atomic; an object store has no rename, so there the folder is copied and the file
named `commit_last` is copied after everything else: a reader that requires it sees whole
folders only, and a copy that fails half-way leaves a visible folder without that file.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator

from ctdenoise.storage import files

_OWNER_FILE = ".owner"
_PARTIAL = ".partial-"
_TOKEN_HEX = 8


def staging_name(name: str) -> str:
    """The hidden folder `staged` builds `name` in: `.NAME.partial-` and a random token."""
    return f".{name}{_PARTIAL}{uuid.uuid4().hex[:_TOKEN_HEX]}"


@contextlib.contextmanager
def staged(target: str, commit_last: str | None = None) -> Iterator[str]:
    """A new hidden folder to build `target` in; on success it becomes `target` (which must
    not exist, or be an empty local folder), on failure it is removed."""
    parent, name = files.split(target)
    files.makedirs(parent)
    _remove_abandoned(parent, name)
    staging = files.join(parent, staging_name(name))
    files.makedirs(staging)
    files.write_text(files.join(staging, _OWNER_FILE), f"{socket.gethostname()} {os.getpid()}\n")
    try:
        yield staging
        # The owner file stays until the folder has moved: in an object store the move is a
        # copy, and another publish of the same name must not take the folder for abandoned.
        files.move_tree(staging, str(target), last=commit_last, stays=_OWNER_FILE)
    except BaseException:
        files.remove_tree(staging)
        raise


def _remove_abandoned(parent: str, name: str) -> None:
    """Staging folders of `name` whose owner process on this machine is gone (killed)."""
    prefix = f".{name}{_PARTIAL}"
    for entry in files.listdir(parent):
        owner = files.join(files.join(parent, entry), _OWNER_FILE)
        if entry.startswith(prefix) and not _alive(owner):
            files.remove_tree(files.join(parent, entry))


def _alive(owner_file: str) -> bool:
    """Whether the process recorded in `owner_file` still runs (unknown hosts count as alive)."""
    try:
        host, pid = files.read_text(owner_file).split()
    except (OSError, ValueError):
        return False
    return host != socket.gethostname() or running(int(pid))


def running(pid: int) -> bool:
    """Whether process `pid` of this machine still runs (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
