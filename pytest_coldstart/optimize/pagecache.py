"""The page cache: how much of a file is resident (mincore), and dropping it (posix_fadvise).

Shared by cache hygiene (evict a model's files before a cold start) and the
floor probe (read a scratch file with nothing of it cached). No root needed:
``POSIX_FADV_DONTNEED`` drops clean pages of a file we can open; dirty pages
are flushed first, since DONTNEED skips them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PAGE = mmap.PAGESIZE
_LOW_BIT = bytes(b & 1 for b in range(256))


@dataclass(frozen=True)
class Eviction:
    """Page-cache state of the files we evicted (bytes resident, by mincore)."""

    files: int = 0
    bytes_total: int = 0
    resident_before_bytes: int | None = 0
    resident_after_bytes: int | None = 0
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "bytes": self.bytes_total, "resident_before_bytes": self.resident_before_bytes,
                "resident_after_bytes": self.resident_after_bytes, "errors": list(self.errors)}


#: Files that hold weights (what the load efficiency's page-cache residency counts; config and tokenizer do not).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


@dataclass(frozen=True)
class Residency:
    """How much of some files the page cache holds (mincore), e.g. a model's weights right before a start."""

    files: int = 0
    bytes_total: int = 0
    resident_bytes: int | None = 0

    @property
    def share(self) -> float | None:
        if self.resident_bytes is None or not self.bytes_total:
            return None
        return self.resident_bytes / self.bytes_total

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "bytes": self.bytes_total, "resident_bytes": self.resident_bytes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Residency:
        return cls(int(data.get("files") or 0), int(data.get("bytes") or 0), data.get("resident_bytes"))


def residency(paths: Iterable[Path]) -> Residency:
    """Page-cache residency of *paths* together; ``resident_bytes`` None if any file's is unknown."""
    files, total, resident = 0, 0, 0
    known = True
    for path in paths:
        try:
            size = path.stat().st_size
            count = resident_bytes(path)
        except OSError:
            known = False
            continue
        files += 1
        total += size
        if count is None:
            known = False
        else:
            resident += count
    return Residency(files, total, resident if known else None)


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:  # pragma: no cover - every Linux has a libc
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    return libc


def resident_bytes(path: Path) -> int | None:
    """Bytes of *path* in the page cache (mincore over a shared read-only map); None if unknown."""
    size = path.stat().st_size
    if size == 0:
        return 0
    libc = _libc()
    if libc is None:  # pragma: no cover
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            pages = (size + _PAGE - 1) // _PAGE
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return None
            # Low bit = resident (the rest is reserved); counted in C: a 140 GB model has ~34 M pages.
            return min(size, bytes(vec).translate(_LOW_BIT).count(1) * _PAGE)
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


def drop(path: Path) -> None:
    """Flush *path*'s dirty pages, then drop all of it from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)  # DONTNEED leaves dirty pages behind
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def evict(paths: Iterable[Path]) -> Eviction:
    """Drop each file from the page cache, one ``posix_fadvise(DONTNEED)`` per file."""
    files, total, before, after, errors = 0, 0, 0, 0, []
    known = True
    for path in paths:
        try:
            res_before = resident_bytes(path)
            drop(path)
            res_after = resident_bytes(path)
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror}")
            continue
        files += 1
        total += path.stat().st_size
        if res_before is None or res_after is None:
            known = False
        else:
            before += res_before
            after += res_after
    return Eviction(files, total, before if known else None, after if known else None, tuple(errors))


