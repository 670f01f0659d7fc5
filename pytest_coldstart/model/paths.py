"""Paths from names: the one way a user-given name (model, optimization, launcher, machine, case) becomes a
path, and the one way this package deletes something it made.

A name comes from a config file or a flag; put into a path as is, ``../..`` or a ``/`` reaches outside the
directory meant for it (a result written where ``summary`` never looks, a cache "emptied" several levels
above ``.coldstart/cache/assets``), and 300 characters exceed a file name's 255 bytes. So a name is a *slug*
(:func:`slug`): letters, digits and ``._-``, at most ``MAX_NAME`` characters, not starting with ``.`` and
never containing ``..``. :func:`under` builds a path from a root and such names, and refuses anything that
would lie outside the root; :func:`remove` deletes only what lies strictly inside a root.

The check is lexical (the names themselves), not on resolved paths: a user's own symlink below the root (a
models directory linked from elsewhere) is theirs to make and keeps working.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

from pytest_coldstart.model.errors import ConfigError

#: Longest name accepted (a model, an optimization, a server, a phase): a result's file name holds two of
#: them, a time stamp, the launcher and an id, and must stay well under a file system's 255 bytes.
MAX_NAME = 64
#: Longest asv machine name (one directory of the history; derived names are cut here).
MAX_MACHINE = 100
#: Longest path segment ``under`` builds: a file name composed of names (``STAMP_MODEL_OPT_LAUNCHER_rN_ID.json``)
#: stays under a file system's 255 bytes.
MAX_SEGMENT = 240
SLUG_CHARS = "letters, digits and . _ -"


def slug_rule(max_len: int = MAX_NAME) -> str:
    """What a slug of at most *max_len* characters may be, for messages."""
    return (f"a name of 1-{max_len} {SLUG_CHARS}, not starting with '.' and without '..' "
            "(it becomes part of a file name)")


_SLUG = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
#: A segment ``under`` joins may be composed of names and a time stamp with its UTC offset (``+0000``).
_SEGMENT = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*")
#: What a slug may be, for messages.
SLUG_RULE = slug_rule(MAX_NAME)
MACHINE_RULE = slug_rule(MAX_MACHINE)
SEGMENT_RULE = (f"a file name of 1-{MAX_SEGMENT} {SLUG_CHARS} (and +), made of names, not starting with '.' "
                "and without '..'")


def slug_problem(name: object, max_len: int = MAX_NAME, *, segment: bool = False) -> str | None:
    """Why *name* is not a safe slug (at most *max_len* characters), or None when it is.

    :param segment: a path segment composed of slugs (``+`` allowed too, for a time stamp's offset).
    """
    if not isinstance(name, str):
        return f"is not text ({type(name).__name__})"
    if not name:
        return "is empty"
    if len(name) > max_len:
        return f"has {len(name)} characters, more than {max_len}"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if ".." in name:
        return "contains '..'"
    if name.startswith("."):
        return "starts with '.'"
    if not (_SEGMENT if segment else _SLUG).fullmatch(name):
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in ("._+-" if segment else "._-")))})
        return f"contains {', '.join(repr(c) for c in bad[:5])}"
    return None


def is_slug(name: object) -> bool:
    return slug_problem(name) is None


def shown(name: object, limit: int = 60) -> str:
    """*name* for a message: its repr, cut to *limit* characters."""
    text = repr(name)
    return text if len(text) <= limit else f"{text[:limit - 5]}...{text[-2:]} ({len(str(name))} characters)"


def slug(name: object, what: str = "name", max_len: int = MAX_NAME) -> str:
    """*name* if it is a safe slug, else a ``ConfigError`` naming *what* it is and what is allowed."""
    problem = slug_problem(name, max_len)
    if problem is not None:
        raise ConfigError(f"{what} {shown(name)}: {problem}; allowed: {slug_rule(max_len)}")
    assert isinstance(name, str)
    return name


def under(root: Path, *names: str, what: str = "name") -> Path:
    """``root / name / ...`` for safe slugs *names*, refusing anything that would lie outside *root*.

    Each name is one path segment (no ``/``); the result is absolute (``root`` made absolute, not resolved).
    """
    base = Path(os.path.abspath(root))
    for name in names:
        problem = slug_problem(name, MAX_SEGMENT, segment=True)
        if problem is not None:
            raise ConfigError(f"{what} {shown(name)}: {problem}; allowed: {SEGMENT_RULE}")
    path = base.joinpath(*names)
    if names and not _inside(path, base):  # cannot happen with slugs; kept so the promise does not rest on a regex
        raise ConfigError(f"{what} {shown('/'.join(names))} would lie outside {base}; allowed: {SEGMENT_RULE}")
    return path


def _inside(path: Path, root: Path) -> bool:
    """True when *path* lies strictly inside *root* (lexically, after normalising ``..``)."""
    p, r = os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(root))
    return p != r and os.path.commonpath([p, r]) == r


def check_inside(root: Path, path: Path) -> Path:
    """*path* if it lies strictly inside *root*, else a ``ConfigError`` (nothing is touched)."""
    if not _inside(path, root):
        raise ConfigError(f"refusing to touch {path}: it is not inside {os.path.abspath(root)}")
    return path


def remove(root: Path, path: Path) -> bool:
    """Delete *path* (a tree, a file or a link) if it lies strictly inside *root*; True if something was there.

    The one delete of this package's scratch directories: a path that is *root* itself or outside it is
    refused with a ``ConfigError`` before anything is deleted. A link is removed, never followed.
    """
    check_inside(root, path)
    if path.is_symlink() or path.is_file():
        path.unlink()
        return True
    if path.is_dir():
        shutil.rmtree(path)
        return True
    return False


def remove_quietly(root: Path, path: Path) -> None:
    """``remove`` for cleanup paths (a finally): an OS error is ignored, a path outside *root* still refused."""
    check_inside(root, path)
    with contextlib.suppress(OSError):
        remove(root, path)


def empty_dir(root: Path, path: Path) -> bool:
    """Make *path* (strictly inside *root*) an empty directory; True if something was there before."""
    had = path.exists() and any(path.iterdir()) if path.is_dir() else path.exists() or path.is_symlink()
    remove(root, path)
    path.mkdir(parents=True)
    return had
