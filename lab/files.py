"""Files the lab writes where another local user may have been first (a report folder, a path given on
the command line), and files it serves from such a folder.

The rule, in one place. A file is created under a fresh name beside its place, exclusively and without
following a link (`O_CREAT | O_EXCL | O_NOFOLLOW`), written, given its mode, then renamed to its
name: a link planted there is replaced, never followed, and nothing is ever truncated. A folder the
lab writes into is one it has just made (0700), or a real folder of this user's that nobody else can
write. A file is served only if it is a regular file reached without a link on the way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

PRIVATE: Final = 0o600
"""Files that hold secrets (the customer's password, key logs, captures): their owner's alone."""
SHARED: Final = 0o644
"""Files meant to be read by others once their owner shares the folder they are in."""
FOLDER: Final = 0o700
"""Every folder the lab makes for what it writes."""

_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFolderError(Exception):
    """A folder the lab will not write into (another user's, a link, one others can write, or one
    holding what the lab did not write); the message is one sentence that names it."""


def write_private(path: Path, data: bytes | str) -> None:
    """`data` as the file `path`, readable by its owner alone (0600)."""
    _write(path, data, PRIVATE)


def write_shared(path: Path, data: bytes | str) -> None:
    """`data` as the file `path`, readable by all who can reach its folder (0644)."""
    _write(path, data, SHARED)


def _write(path: Path, data: bytes | str, mode: int) -> None:
    with _fresh_beside(path, mode) as (fd, _), open(fd, "wb", closefd=False) as file:
        file.write(data.encode() if isinstance(data, str) else data)


@contextlib.contextmanager
def private_by_name(path: Path) -> Iterator[Path]:
    """For a writer that takes a file name (scapy's pcapng writer): a fresh private file beside `path`
    for it to fill by name, renamed to `path` once it is done; removed if it fails."""
    with _fresh_beside(path, PRIVATE) as (_, fresh):
        yield fresh


@contextlib.contextmanager
def _fresh_beside(path: Path, mode: int) -> Iterator[tuple[int, Path]]:
    """A new file beside `path` (its descriptor and name), made exclusively without following a link;
    renamed over `path` when the block ends, unlinked when it raises."""
    fresh = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(fresh, _CREATE, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask took away
        yield fd, fresh
        os.rename(fresh, path)  # over a link: the link goes, its target is untouched
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(fresh)
        raise
    finally:
        os.close(fd)


def make_fresh_folder(path: Path) -> None:
    """A new folder at `path` (0700); FileExistsError when anything is there already, a link included."""
    os.mkdir(path, FOLDER)


def own_folder(path: Path) -> None:
    """`path` as a folder the lab may write into: made (0700, and its parents) when it is missing;
    otherwise it must be a real folder (not a link) of this user's that nobody else can write."""
    with contextlib.suppress(FileExistsError):
        os.makedirs(path, FOLDER)
    if require_own_folder(path).st_mode & 0o022:
        raise UnsafeFolderError(f"others can write the folder {path}: the lab does not write into it")


def require_own_folder(path: Path) -> os.stat_result:
    """`path`'s status; `UnsafeFolderError` unless it is a real folder (not a link) of this user's."""
    found = path.lstat()
    if stat.S_ISLNK(found.st_mode):
        raise UnsafeFolderError(f"{path} is a symbolic link: the lab writes only into a real folder")
    if not stat.S_ISDIR(found.st_mode):
        raise UnsafeFolderError(f"{path} is not a folder")
    if found.st_uid != os.geteuid():
        raise UnsafeFolderError(
            f"{path} belongs to another user (uid {found.st_uid}): the lab writes only into folders of yours"
        )
    return found


def close_folder(path: Path) -> None:
    """Make a folder of this user's 0700, through a descriptor opened without following a link."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, FOLDER)
    finally:
        os.close(fd)


def open_inside(root: Path, relative: str) -> BinaryIO | None:
    """The regular file at `relative` (slash-separated) inside `root`, opened without following a link
    at any step; None for anything else (missing, a folder, a link, `..`, a device or a pipe)."""
    parts = relative.split("/")
    if any(part in ("", ".", "..") or "\0" in part for part in parts):
        return None
    try:
        folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            os.close(folder)
            folder = inner
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except OSError:  # a link on the way (ELOOP, ENOTDIR), or nothing there
        return None
    finally:
        os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return open(fd, "rb")
