"""A private copy of the user's repository: the agent works there, paths cannot leave it, and git gives the diff.
The copy keeps links as links (never followed), leaves special files out, and opens each file without following a
link or blocking on a FIFO.

The git directory lives *beside* the copy, never inside it: nothing the model writes (or a test it runs) can reach it,
and every git command k2probe runs uses a configuration of its own: no system or global config, no hooks, no
fsmonitor, and `info/attributes` switching off every filter, textconv and merge driver a `.gitattributes` could name."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from k2probe.core.liveness import mark_owner
from k2probe.sandbox.copying import copy_regular

_IGNORED_NAMES = shutil.ignore_patterns(".git", ".k2probe", "__pycache__", "*.pyc", ".venv", "node_modules",
                                        ".mypy_cache", ".pytest_cache", ".ruff_cache")


def left_out(folder: str, names: list[str]) -> set[str]:
    """What a workspace copy leaves out: caches, VCS folders, and special files (FIFOs, sockets, devices)."""
    special = {n for n in names if not stat.S_ISREG(mode := os.lstat(os.path.join(folder, n)).st_mode)
               and not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode)}
    return set(_IGNORED_NAMES(folder, names)) | special
GIT_FLAGS = ["-c", "safe.directory=*", "-c", "user.name=k2probe", "-c", "user.email=k2probe@localhost",
             "-c", "core.autocrlf=false", "-c", "commit.gpgsign=false", "-c", "core.fsmonitor=false",
             "-c", "core.hooksPath=/dev/null", "-c", "core.attributesFile=/dev/null", "-c", "core.untrackedCache=false",
             "-c", "diff.external=", "-c", "core.sshCommand=false", "-c", "protocol.allow=never"]
NEUTRAL_ATTRIBUTES = b"* -filter !diff -merge -ident -text -working-tree-encoding\n"
MAX_PATH = 1024


class PathDenied(Exception):
    """A path that would leave the workspace, enter .git, or is not a path at all."""


def git_env(git_dir: Path, work_tree: Path) -> dict[str, str]:
    """The environment of every git (or patch) command k2probe runs: its own config only, nothing from the machine or
    the user, no key."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    env.update({"GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(work_tree), "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_ATTR_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
                "HOME": str(git_dir), "XDG_CONFIG_HOME": str(git_dir)})
    return env


def check_relative(relative: str) -> None:
    """PathDenied unless `relative` is a plain relative path: no NUL or control characters, not absolute, no .git."""
    if not relative or len(relative) > MAX_PATH:
        raise PathDenied(f"path {relative[:80]!r} is empty or too long")
    if any(ord(c) < 32 for c in relative):
        raise PathDenied(f"path {relative!r} contains a NUL or control character")
    if relative.startswith(("/", "~")):
        raise PathDenied(f"path {relative!r} must be relative to the repository root")
    if ".git" in Path(relative).parts:
        raise PathDenied(f"path {relative!r} is inside .git")


class Workspace:
    """A temporary copy of a repository with a git baseline commit, removed by `cleanup()`."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.base = Path(tempfile.mkdtemp(prefix="k2probe-ws-")).resolve()
        mark_owner(self.base)
        self.root = self.base / "repo"
        self.git_dir = self.base / "git"
        shutil.copytree(source, self.root, ignore=left_out, symlinks=True, copy_function=copy_regular)
        subprocess.run(["git", *GIT_FLAGS, "init", "-q"], env=git_env(self.git_dir, self.root), cwd=self.base,
                       capture_output=True, timeout=60, check=True)
        (self.git_dir / "info").mkdir(exist_ok=True)
        (self.git_dir / "info" / "attributes").write_bytes(NEUTRAL_ATTRIBUTES)
        self._trusted = {name: (self.git_dir / name).read_bytes() for name in ("config", "info/attributes")}
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "--no-verify", "-m", "k2probe baseline")

    def git(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """git on the workspace, with k2probe's config restored first: whatever else wrote it is not trusted."""
        for name, content in self._trusted.items():
            path = self.git_dir / name
            if not path.is_file() or path.is_symlink() or path.read_bytes() != content:
                path.unlink(missing_ok=True)
                path.write_bytes(content)
        return subprocess.run(["git", *GIT_FLAGS, *args], cwd=self.root, input=stdin, capture_output=True, text=True,
                              timeout=60, env=git_env(self.git_dir, self.root),
                              stdin=None if stdin is not None else subprocess.DEVNULL)

    def resolve(self, relative: str) -> Path:
        """The real path of `relative` inside the workspace, links resolved; PathDenied if it leaves the workspace
        (through `..` or any link), enters .git, or is no path at all."""
        check_relative(relative)
        target = Path(os.path.realpath(self.root / relative))
        if target != self.root and self.root not in target.parents:
            raise PathDenied(f"path {relative!r} leaves the repository")
        if ".git" in target.relative_to(self.root).parts:
            raise PathDenied(f"path {relative!r} is inside .git")
        return target

    def read_bytes(self, relative: str, limit: int) -> bytes:
        """A regular file's first `limit` bytes; never a link out, a FIFO, a device or /proc."""
        fd = os.open(self.resolve(relative), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PathDenied(f"{relative} is not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as handle:
                return handle.read(limit)
        finally:
            os.close(fd)

    def write_bytes(self, relative: str, content: bytes) -> None:
        """Create or replace a regular file inside the workspace; a link or special file in the way is refused."""
        target = self.resolve(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PathDenied(f"{relative} is not a regular file")
            os.ftruncate(fd, 0)
            os.write(fd, content)
        finally:
            os.close(fd)

    def regular_files(self, relative: str = ".") -> tuple[list[Path], int]:
        """Regular files under a folder (or the file itself), sorted; and how many links were skipped, not followed."""
        base = self.resolve(relative)
        if base.is_file():
            return ([base], 0) if stat.S_ISREG(os.lstat(base).st_mode) else ([], 0)
        found: list[Path] = []
        links = 0
        for folder, dirs, files in os.walk(base):
            links += sum(os.path.islink(os.path.join(folder, d)) for d in dirs)
            dirs[:] = sorted(d for d in dirs if d != ".git" and not os.path.islink(os.path.join(folder, d)))
            for name in files:
                path = Path(folder) / name
                mode = os.lstat(path).st_mode
                if stat.S_ISREG(mode):
                    found.append(path)
                elif stat.S_ISLNK(mode):
                    links += 1
        return sorted(found), links

    def is_link_on_the_way(self, relative: str) -> bool:
        """Does any existing component of `relative` (the last included) name a symbolic link?"""
        check_relative(relative)
        path = self.root
        for part in Path(relative).parts:
            path = path / part
            if path.is_symlink():
                return True
            if not path.exists():
                return False
        return False

    def entries(self) -> dict[str, tuple[int, int, int, int]]:
        """Every entry under the workspace, links not followed: path → (mode, size, mtime, inode)."""
        found = {}
        for folder, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = os.path.join(folder, name)
                info = os.lstat(path)
                found[os.path.relpath(path, self.root)] = (info.st_mode, info.st_size, info.st_mtime_ns, info.st_ino)
        return found

    def changes_problem(self, before: dict[str, tuple[int, int, int, int]], max_file: int, max_growth: int) -> str | None:
        """What is wrong with the changes since `before` (judged on the tree itself, whatever a tool's input said):
        anything in .git, a new link, a special file, a file over `max_file` bytes, growth over `max_growth`."""
        after = self.entries()
        for rel, info in after.items():
            if before.get(rel) == info:
                continue
            mode = info[0]
            if ".git" in Path(rel).parts:
                return f"it would write {rel}, inside .git"
            if stat.S_ISLNK(mode):
                return f"it would make {rel} a symbolic link"
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                return f"it would make {rel} a special file"
            if stat.S_ISREG(mode) and info[1] > max_file:
                return f"it would make {rel} {info[1]} bytes (the limit is {max_file})"
        growth = sum(i[1] for i in after.values()) - sum(i[1] for i in before.values())
        return f"it would grow the workspace by {growth} bytes" if growth > max_growth else None

    @contextlib.contextmanager
    def guarded(self) -> Iterator[Callable[[], None]]:
        """A copy of the workspace kept beside it while a change is tried; the callable puts it back exactly."""
        backup = self.base / "backup"
        shutil.rmtree(backup, ignore_errors=True)
        shutil.copytree(self.root, backup, symlinks=True, copy_function=copy_regular)

        def restore() -> None:
            shutil.rmtree(self.root)
            shutil.copytree(backup, self.root, symlinks=True, copy_function=copy_regular)

        try:
            yield restore
        finally:
            shutil.rmtree(backup, ignore_errors=True)

    def diff(self) -> str:
        """Everything changed since the baseline, new files included."""
        self.git("add", "-A")
        return self.git("diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv").stdout

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
