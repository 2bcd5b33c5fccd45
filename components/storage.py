"""Files under a data root that is either a local folder or an object store (gs://, s3://).

Local paths use the standard library (fast, no TensorFlow start-up); URLs go through TFX's
`fileio`, which reaches object stores through TensorFlow's file systems. Ingestion and its
cache key use only these functions, so the same pipeline reads a laptop folder or a bucket.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
from typing import BinaryIO, Iterator


def is_remote(path: str) -> bool:
    return "://" in path


def join(root: str, rel_path: str) -> str:
    """`rel_path` (POSIX) under `root`."""
    return posixpath.join(root, rel_path) if is_remote(root) else os.path.join(root, *rel_path.split("/"))


def relative_files(root: str) -> list[str]:
    """Every regular file under `root` as a sorted POSIX path relative to it, hidden ones
    included (nothing vanishes silently)."""
    root = root.rstrip("/") if is_remote(root) else root
    found = []
    for dirpath, _dirs, names in _walk(root):
        base = dirpath.rstrip("/")[len(root):].lstrip("/").replace(os.sep, "/")
        found.extend(f"{base}/{name}" if base else name for name in names)
    return sorted(rel for rel in found if is_remote(root) or os.path.isfile(join(root, rel)))


def exists(path: str) -> bool:
    if is_remote(path):
        from tfx.dsl.io import fileio

        return fileio.exists(path)
    return os.path.exists(path)


@contextlib.contextmanager
def open_binary(path: str) -> Iterator[BinaryIO]:
    if is_remote(path):
        from tfx.dsl.io import fileio

        with fileio.open(path, "rb") as f:
            yield f
    else:
        with open(path, "rb") as f:
            yield f


def fingerprint(root: str) -> str:
    """Hash of every file's path, size and modification time: the ingestion's cache key, so
    a re-run on unchanged data reuses the ingested artifact and a changed file does not."""
    digest = hashlib.sha256()
    for rel in relative_files(root):
        size, mtime = _size_and_mtime(join(root, rel))
        digest.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def _walk(root: str):
    if is_remote(root):
        from tfx.dsl.io import fileio

        for dirpath, _dirs, names in fileio.walk(root):
            yield (dirpath.decode() if isinstance(dirpath, bytes) else dirpath), _dirs, [
                n.decode() if isinstance(n, bytes) else n for n in names]
    else:
        yield from os.walk(root)


def _size_and_mtime(path: str) -> tuple[int, int]:
    if is_remote(path):
        from tfx.dsl.io import fileio

        stat = fileio.stat(path)
        return int(stat.length), int(stat.mtime_nsec)
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns
