"""The one way this package writes a file people keep, and reads a TOML file.

Every kept file (results, asv JSON, markers, reports, figures, downloads) is
written to a temp file in the target's directory, fsync'ed, then moved into
place: a reader sees the old state or the whole new file, never half of it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pytest_coldstart.model.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@contextmanager
def atomic_path(target: Path, *, overwrite: bool = True, mode: int | None = 0o644,
                suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside *target*; when the block succeeds it becomes *target*.

    :param overwrite: False makes an existing *target* an error (``FileExistsError``)
        instead of replacing it (``os.link`` refuses, ``os.replace`` would not).
    :param mode: permissions of the result (``mkstemp`` makes 0600; kept files are for sharing).
        None keeps 0600.
    :param suffix: the temp file's suffix (matplotlib picks the format from it).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # fails instead of replacing if the name exists
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty sibling directory; when the block succeeds it replaces *target*.

    A crash or an exception leaves *target* as it was (and no half-built
    directory that looks finished): generated models, shards, fetched caches.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(target: Path, text: str, *, overwrite: bool = True, mode: int | None = 0o644) -> Path:
    with atomic_path(target, overwrite=overwrite, mode=mode) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def atomic_write_bytes(target: Path, data: bytes, *, overwrite: bool = True, mode: int | None = 0o644) -> Path:
    with atomic_path(target, overwrite=overwrite, mode=mode) as tmp:
        tmp.write_bytes(data)
    return target


def atomic_write_json(target: Path, data: object, *, overwrite: bool = True, indent: int = 2) -> Path:
    """JSON with a trailing newline, written atomically."""
    return atomic_write_text(target, json.dumps(data, indent=indent) + "\n", overwrite=overwrite)


def load_toml(path: Path, what: str) -> dict[str, object]:
    """Parse *path*; a missing or invalid file is a ``ConfigError`` naming *what* it should be."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: not a readable {what}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not a readable {what}: not valid TOML: {exc}") from None


def loads_toml(text: str, where: str, what: str) -> dict[str, object]:
    """Parse TOML text already read (e.g. from git); errors name *where*."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not a readable {what}: not valid TOML: {exc}") from None


def toml_tables(data: Mapping[str, object], key: str, where: str) -> dict[str, dict[str, object]]:
    """The ``[key.NAME]`` tables of *data* by NAME (none when *key* is missing); a ``ConfigError`` naming
    *where* and the entry when *key* or one of its entries is not a table."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} = {value!r}; expected [{key}.NAME] tables")
    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {key}.{name} = {table!r}; expected a table ([{key}.{name}])")
    return value


def toml_array_of_tables(data: Mapping[str, object], key: str, where: str) -> list[dict[str, object]]:
    """The ``[[key]]`` tables of *data* (none when *key* is missing); ``ConfigError`` naming *where* otherwise."""
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError(f"{where}: {key} = {value!r}; expected [[{key}]] tables")
    return value
