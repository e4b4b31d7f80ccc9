"""Copies that never follow a link or read a device: a tree is checked entry by entry (lstat, never stat) before
anything of it is copied, and each file is opened without following links and copied only if it is a regular file."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a device node", stat.S_IFBLK: "a device node",
         stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}


class UnsafeEntry(OSError):
    """A link or a special file where only regular files and folders may be."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is {kind}")
        self.path = path
        self.kind = kind


def kind_of(mode: int) -> str | None:
    """None for a regular file or a folder; else what it is."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return KINDS.get(stat.S_IFMT(mode), "a special file")


def first_unsafe(folder: Path) -> UnsafeEntry | None:
    """The first link or special file in `folder` (the folder itself included), links never followed."""
    kind = kind_of(os.lstat(folder).st_mode)
    if kind is not None:
        return UnsafeEntry(folder, kind)
    pending = [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                mode = entry.stat(follow_symlinks=False).st_mode
                kind = kind_of(mode)
                if kind is not None:
                    return UnsafeEntry(Path(entry.path), kind)
                if stat.S_ISDIR(mode):
                    pending.append(Path(entry.path))
    return None


def copy_regular(source: str, target: str) -> str:
    """Copy one file only if it is a regular file, opened without following a link and without blocking on a FIFO."""
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeEntry(Path(source), kind_of(mode) or "not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        shutil.copymode(source, target, follow_symlinks=False)
    finally:
        os.close(fd)
    return target


def copy_tree(source: Path, target: Path, *, merge: bool = False) -> None:
    """Copy `source` to `target` (over it when `merge`); UnsafeEntry, before anything is copied, if it holds a link
    or a special file."""
    unsafe = first_unsafe(source)
    if unsafe is not None:
        raise unsafe
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=merge, copy_function=copy_regular)
