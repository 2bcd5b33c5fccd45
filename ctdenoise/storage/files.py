"""Files and folders that may live on the local disk or in an object store.

Local paths use the standard library (fast, no TensorFlow start-up); URLs go through TFX's
`fileio`, which reaches object stores through TensorFlow's file systems. Every component,
the trainer and the command line read and write artifacts only through these functions,
so the same code runs on a laptop and in a Kubeflow pod whose every URI is a bucket.

Object stores are not file systems, and the functions here do not pretend otherwise
(docs/kubeflow.md, "Object stores"):

- `gs://` is built into TensorFlow; `s3://` (AWS, MinIO) comes from `tensorflow-io`, which
  is imported on the first use of an `s3://` URL here (`enable_object_stores`). Code that
  hands a URL straight to TensorFlow, TFMA or TFDV passes it through `tf_path` first.
- A folder exists only as the prefix of the objects under it: `makedirs` writes nothing,
  and an empty folder neither exists nor is a folder. Nothing here relies on either.
- S3 cannot copy an empty object onto itself ("Source is a directory or empty file"):
  `copy_file` writes empty content instead.
- There is no rename of a folder: `move_tree` copies, then deletes the source, and is not
  atomic (`ctdenoise.storage.publish` builds on that with a commit file written last).
- A process that used `s3://` through tensorflow-io 0.37 aborts in the AWS SDK's static
  destructors at exit ("pure virtual method called", exit 134, tensorflow/io#2039):
  entry points end with `exit_process`, which skips them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import posixpath
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO, cast

_TFIO_SCHEMES = ("s3://",)
"""URL schemes TensorFlow reaches only once tensorflow-io is imported."""


def is_remote(path: str) -> bool:
    return "://" in str(path)


def join(root: str, rel_path: str) -> str:
    """`rel_path` (POSIX) under `root`."""
    root = str(root)
    return posixpath.join(root, rel_path) if is_remote(root) else os.path.join(root, *rel_path.split("/"))


def absolute(location: str | os.PathLike) -> str:
    """A folder as an absolute path (what ML Metadata records); a URL unchanged."""
    return str(location) if is_remote(str(location)) else os.path.realpath(location)


def split(path: str) -> tuple[str, str]:
    """(parent folder, last name) of `path`; a trailing slash is ignored, and a bare local
    name's parent is the working folder (".")."""
    path = str(path).rstrip("/")
    if is_remote(path):
        return posixpath.split(path)
    parent, name = os.path.split(path)
    return parent or os.curdir, name


def needs_tensorflow_io(values: Iterable[Any]) -> bool:
    """Whether any of `values` is a URL that only tensorflow-io makes TensorFlow able to open."""
    return any(isinstance(v, str) and v.startswith(_TFIO_SCHEMES) for v in values)


def enable_object_stores() -> bool:
    """Register tensorflow-io's file systems (`s3://`) with TensorFlow, once per process.
    False when tensorflow-io is not installed (then only `gs://` and local paths work)."""
    if "tensorflow_io" in sys.modules:
        return True
    try:
        import tensorflow_io  # noqa: F401  (registers s3:// with TensorFlow's file I/O)
    except ImportError:
        return False
    return True


def object_stores_enabled() -> bool:
    """Whether this process loaded tensorflow-io (and so must leave through `exit_process`)."""
    return "tensorflow_io" in sys.modules


def exit_code(exc: SystemExit) -> int:
    """The status a `SystemExit` stands for, as the interpreter reads it: an int as it is, None
    as 0, anything else (a message) as 1."""
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def exit_process(code: int) -> int:
    """End an entry point: after tensorflow-io was used, flush and leave with os._exit,
    skipping the AWS SDK's static destructors that abort the process with exit 134
    (tensorflow/io#2039); otherwise return `code` for sys.exit."""
    if not object_stores_enabled():
        return code
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def tf_path(path: str) -> str:
    """`path` as a string TensorFlow (and TFMA, TFDV) can open: for an `s3://` URL the
    tensorflow-io file system is registered first."""
    path = str(path)
    if path.startswith(_TFIO_SCHEMES):
        enable_object_stores()
    return path


def _fileio(path: str):
    tf_path(path)
    from tfx.dsl.io import fileio

    return fileio


def exists(path: str) -> bool:
    """Whether a file or a folder holding at least one file is at `path` (an empty remote
    folder does not exist)."""
    return _fileio(path).exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    """Whether `path` is a folder; a remote one only once it holds a file."""
    return _fileio(path).isdir(path) if is_remote(path) else os.path.isdir(path)


def makedirs(path: str) -> None:
    """Create the folder `path` and its parents. In an object store this may write nothing:
    the folder appears with its first file."""
    if is_remote(path):
        _fileio(path).makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def listdir(path: str) -> list[str]:
    """Names directly inside the folder `path` (no trailing slashes), sorted; [] for a
    remote folder that holds nothing (it does not exist as such)."""
    if not is_remote(path):
        return sorted(os.listdir(path))
    if not isdir(path):
        if exists(path):
            raise NotADirectoryError(f"not a folder: {path}")
        return []
    return sorted(_text(name).rstrip("/") for name in _fileio(path).listdir(path))


@contextlib.contextmanager
def _storage_errors(path: str) -> Iterator[None]:
    """TensorFlow's file errors raised as FileNotFoundError, PermissionError or OSError, as
    for local files, so that callers telling storage failures from bad content see them."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.NotFoundError as exc:
        raise FileNotFoundError(f"no such file or folder: {path}") from exc
    except tf.errors.PermissionDeniedError as exc:
        raise PermissionError(f"permission denied: {path}") from exc
    except tf.errors.OpError as exc:
        raise OSError(f"cannot read or write {path}: {exc.message}") from exc


@contextlib.contextmanager
def _remote_open(path: str, mode: str) -> Iterator[Any]:
    """A remote file. TensorFlow opens lazily and reports failures at the first read, so the
    whole use is inside `_storage_errors`."""
    with _storage_errors(path), _fileio(path).open(path, mode) as f:
        yield f


@contextlib.contextmanager
def open_binary(path: str, mode: str = "rb") -> Iterator[BinaryIO]:
    """The file `path`; a missing one raises FileNotFoundError in a bucket too."""
    if is_remote(path):
        with _remote_open(path, mode) as f:
            yield cast(BinaryIO, f)
    else:
        with open(path, mode) as f:
            yield cast(BinaryIO, f)


@contextlib.contextmanager
def open_text(path: str, mode: str = "r") -> Iterator[TextIO]:
    """The file `path` as UTF-8 text; a missing one raises FileNotFoundError in a bucket too."""
    if is_remote(path):
        with _remote_open(path, mode) as f:
            yield cast(TextIO, f)
    else:
        with open(path, mode, encoding="utf-8") as f:
            yield cast(TextIO, f)


def read_bytes(path: str) -> bytes:
    with open_binary(path) as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    with open_binary(path, "wb") as f:
        f.write(data)


def read_text(path: str) -> str:
    with open_text(path) as f:
        return f.read()


def write_text(path: str, text: str) -> None:
    with open_text(path, "w") as f:
        f.write(text)


def size(path: str) -> int:
    """Length of the file `path` in bytes."""
    return int(_fileio(path).stat(path).length) if is_remote(path) else os.path.getsize(path)


def remove(path: str) -> None:
    """Remove the file `path` (nothing when it does not exist)."""
    if is_remote(path):
        if _fileio(path).exists(path):
            _fileio(path).remove(path)
    elif os.path.lexists(path):
        os.remove(path)


def read_json(path: str) -> Any:
    with open_text(path) as f:
        return json.loads(f.read())


def write_json(path: str, value: Any) -> None:
    """`value` as indented JSON at `path` (its folder is created)."""
    makedirs(posixpath.dirname(path) if is_remote(path) else os.path.dirname(os.path.abspath(path)))
    with open_text(path, "w") as f:
        f.write(json.dumps(value, indent=1, sort_keys=True) + "\n")


def copy_file(source: str, target: str) -> None:
    """Copy one file, replacing `target`. An empty file is written rather than copied: S3
    refuses to copy an empty object ("Source is a directory or empty file")."""
    if not is_remote(source) and not is_remote(target):
        shutil.copyfile(source, target)
    elif size(source) == 0:
        write_bytes(target, b"")
    else:
        _fileio(source if is_remote(source) else target).copy(source, target, overwrite=True)


def copy_tree(source: str, target: str, last: str | None = None, skip: str | None = None) -> None:
    """Copy the folder `source` into `target` (created; existing files are replaced). The
    top-level file named `last`, if any, is copied after every other one, so that its
    presence means the copy is complete; the top-level file named `skip` is not copied.
    Empty sub-folders are not copied into an object store, which has no empty folders. A
    missing `source` is an error, never an empty copy."""
    if not isdir(source):
        raise FileNotFoundError(f"no such folder: {source}")
    if not is_remote(source) and not is_remote(target) and last is None and skip is None:
        shutil.copytree(source, target, dirs_exist_ok=True)
        return
    final = None
    for dirpath, _dirs, names in walk(source):
        rel = _relative(dirpath, source)
        folder = join(target, rel) if rel else target
        makedirs(folder)
        for name in names:
            if not rel and name == skip:
                continue
            if not rel and name == last:
                final = (join(dirpath, name), join(folder, name))
            else:
                copy_file(join(dirpath, name), join(folder, name))
    if final:
        copy_file(*final)


def move_tree(source: str, target: str, last: str | None = None, stays: str | None = None) -> None:
    """Move the folder `source` to `target`, which must not exist, except its top-level file
    named `stays`, which is removed with `source`. Locally an atomic rename (`stays` removed
    just before it); in an object store, which cannot rename, a copy (`last` copied last,
    see copy_tree) followed by the removal of `source`, `stays` included: not atomic, so
    readers of `target` must wait for `last`, and `stays` marks `source` as busy until the
    copy is whole. An existing remote `target` is refused before copying (two movers that
    check at the same moment can still both copy)."""
    if not is_remote(source) and not is_remote(target):
        if stays:
            remove(join(source, stays))
        os.rename(source, target)
        return
    if exists(target):
        raise FileExistsError(f"already exists: {target}")
    copy_tree(source, target, last=last, skip=stays)
    remove_tree(source)


def remove_tree(path: str) -> None:
    """Remove the folder `path` and everything in it (nothing when it does not exist).
    Remotely only objects under `path/` go: never a sibling that merely shares the prefix."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    path = str(path).rstrip("/")
    fileio = _fileio(path)
    for dirpath, _dirs, names in list(walk(path)):
        for name in names:
            with contextlib.suppress(OSError):
                fileio.remove(join(dirpath, name))
    if fileio.exists(path):  # directory marker objects (written by some stores' makedirs)
        with contextlib.suppress(OSError):
            fileio.rmtree(path)


def walk(root: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """(folder, sub-folder names, file names) for every folder under `root`, top down;
    nothing for a remote root that holds no file. A folder that cannot be listed raises
    (os.walk and gfile.walk would skip it silently, and a copy would lose its files)."""
    if is_remote(root):
        root = str(root).rstrip("/")
        if not isdir(root):
            return
        with _storage_errors(root):
            for dirpath, dirs, names in _fileio(root).walk(root, onerror=_raise):
                yield _text(dirpath).rstrip("/"), [_text(d).rstrip("/") for d in dirs], [_text(n) for n in names]
    else:
        yield from os.walk(root, onerror=_raise)


def _raise(error: Exception) -> None:
    raise error


@dataclass
class Listing:
    """Every entry under a root: the regular files (POSIX paths relative to the root, sorted)
    and the entries that hold no readable file, each with its reason."""

    files: list[str] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)


def list_tree(root: str) -> Listing:
    """Every file under `root`, hidden ones included, so that nothing vanishes silently.

    Symbolic links are followed, as clinical staging folders need: a link to a folder is
    walked like a folder, a link to a file listed like a file. What cannot be listed is a
    problem with its reason: an unreadable folder, a broken link, a link that loops back to
    a folder above it, and a second path to a folder or file already listed (listing it
    again would ingest one file twice). Object stores have none of these.
    """
    if is_remote(root):
        root = str(root).rstrip("/")
        names = [
            f"{_relative(dirpath, root)}/{name}".lstrip("/") for dirpath, _d, files in walk(root) for name in files
        ]
        return Listing(sorted(names))
    listing, seen = Listing(), dict[str, str]()
    _list_local(str(root), "", listing, seen, ancestors=(os.path.realpath(root),))
    listing.files.sort()
    listing.problems.sort(key=lambda p: p["path"])
    return listing


def _list_local(folder: str, rel: str, listing: Listing, seen: dict[str, str], ancestors: tuple[str, ...]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        listing.problems.append({"path": f"{rel}/" if rel else "./", "reason": f"unreadable folder ({exc.strerror})"})
        return
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        real = os.path.realpath(entry.path)
        if entry.is_symlink() and not os.path.exists(entry.path):
            reason = "symbolic link loop" if _loops(entry.path) else "broken symbolic link"
            listing.problems.append({"path": path, "reason": reason})
        elif real in ancestors:
            listing.problems.append({"path": path, "reason": "symbolic link loop (links to a folder above it)"})
        elif real in seen:
            kind = "folder" if entry.is_dir() else "file"
            listing.problems.append({"path": path, "reason": f"same {kind} as {seen[real]} (one {kind}, two paths)"})
        elif entry.is_dir():
            seen[real] = path + "/"
            _list_local(entry.path, path, listing, seen, ancestors + (real,))
        elif entry.is_file():
            seen[real] = path
            listing.files.append(path)
        else:
            listing.problems.append({"path": path, "reason": "not a regular file"})


def _loops(path: str) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def fingerprint(root: str) -> str:
    """Hash of every file's path, size and modification time (and of every problem listing
    it): the ingestion's cache key, so a re-run on unchanged data reuses the ingested
    artifact and a changed file does not."""
    digest = hashlib.sha256()
    listing = list_tree(root)
    for rel in listing.files:
        length, mtime = _size_and_mtime(join(root, rel))
        digest.update(f"{rel}\0{length}\0{mtime}\n".encode())
    for problem in listing.problems:
        digest.update(f"{problem['path']}\0{problem['reason']}\n".encode())
    return digest.hexdigest()


def _relative(dirpath: str, root: str) -> str:
    return dirpath.rstrip("/")[len(str(root).rstrip("/")) :].lstrip("/").replace(os.sep, "/")


def _size_and_mtime(path: str) -> tuple[int, int]:
    if is_remote(path):
        stat = _fileio(path).stat(path)
        return int(stat.length), int(stat.mtime_nsec)
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
