"""A private copy of the user's repository: the agent works there, paths cannot leave it, and git gives the diff."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from .sandbox import prepare_workspace

IGNORE = shutil.ignore_patterns(".git", ".k2probe", "__pycache__", "*.pyc", ".venv", "node_modules", ".mypy_cache",
                                ".pytest_cache", ".ruff_cache")
GIT = ["git", "-c", "safe.directory=*", "-c", "user.name=k2probe", "-c", "user.email=k2probe@localhost",
       "-c", "core.autocrlf=false", "-c", "commit.gpgsign=false"]


class PathDenied(Exception):
    """A path that would leave the workspace."""


class Workspace:
    """A temporary copy of a repository with a git baseline commit, removed by `cleanup()`."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.root = Path(tempfile.mkdtemp(prefix="k2probe-ws-")).resolve() / "repo"
        shutil.copytree(source, self.root, ignore=IGNORE, symlinks=True)
        self.git("init", "-q")
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", "k2probe baseline")
        prepare_workspace(self.root.parent)

    def git(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GIT, *args], cwd=self.root, input=stdin, capture_output=True, text=True, timeout=60)

    def resolve(self, relative: str) -> Path:
        """The absolute path of `relative` inside the workspace; PathDenied if it would leave it."""
        if not relative or relative.startswith(("/", "~")):
            raise PathDenied(f"path {relative!r} must be relative to the repository root")
        target = (self.root / relative).resolve()
        if target != self.root and self.root not in target.parents:
            raise PathDenied(f"path {relative!r} leaves the repository")
        if ".git" in target.relative_to(self.root).parts:
            raise PathDenied(f"path {relative!r} is inside .git")
        return target

    def diff(self) -> str:
        """Everything changed since the baseline, new files included."""
        self.git("add", "-A")
        return self.git("diff", "--cached", "--no-color", "--no-ext-diff").stdout

    def copy_for_verification(self, hidden: Path | None) -> Path:
        """A fresh copy of the current state, with the hidden tests laid in (the model never saw them)."""
        target = Path(tempfile.mkdtemp(prefix="k2probe-verify-")).resolve() / "repo"
        shutil.copytree(self.root, target, ignore=IGNORE, symlinks=True)
        if hidden is not None:
            shutil.copytree(hidden, target / hidden.name, dirs_exist_ok=True)
        prepare_workspace(target.parent)
        return target

    def cleanup(self) -> None:
        shutil.rmtree(self.root.parent, ignore_errors=True)
