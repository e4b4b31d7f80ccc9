"""What a sandboxed command runs with: the interpreter (`python` and `python3` always name it), the PATH, and the
installations to mount read-only so that they work inside, wherever they live (a venv under /tmp, pyenv under /root,
/opt). Shipped suites run under k2probe's own interpreter; a user's repository under the caller's PATH and venv, or
the interpreter given with --python."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
NEVER_MOUNTED = ("/", "/usr", "/tmp", "/home", "/root", "/var", "/etc", "/opt", "/run", "/proc", "/sys", "/dev")


def _homes() -> set[str]:
    homes = {"/root", str(Path.home()), os.path.expanduser("~")}
    if os.path.isdir("/home"):
        homes |= {str(p) for p in Path("/home").iterdir()}
    return homes


def _forbidden(path: str) -> bool:
    """Never mounted: the top-level folders, and any home folder or a folder above one (a home holds keys)."""
    if path in NEVER_MOUNTED or not os.path.isabs(path):
        return True
    return any(path == home or home.startswith(path.rstrip("/") + "/") for home in _homes())


def _venv_of(bin_dir: str) -> str | None:
    """The virtual environment a bin folder belongs to (it has pyvenv.cfg), if any."""
    prefix = str(Path(bin_dir).parent)
    return prefix if (Path(prefix) / "pyvenv.cfg").is_file() and not _forbidden(prefix) else None


@dataclass(frozen=True)
class Runtime:
    """PATH entries (in order) and the interpreter behind `python`; `virtual_env` is passed on when set."""

    python: str
    path: tuple[str, ...]
    virtual_env: str | None = None

    @classmethod
    def own(cls) -> Runtime:
        """k2probe's own interpreter, with the packages it was installed with (pytest among them)."""
        return cls(sys.executable, (str(Path(sys.executable).parent), *SYSTEM_PATH))

    @classmethod
    def caller(cls, python: str | None = None) -> Runtime:
        """The caller's PATH and VIRTUAL_ENV, with `python` (when given) first."""
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and os.path.isabs(p)]
        venv = os.environ.get("VIRTUAL_ENV") or None
        if python is not None:
            path.insert(0, str(Path(python).parent))
        chosen = python or shutil.which("python", path=os.pathsep.join(path)) or shutil.which(
            "python3", path=os.pathsep.join(path)) or sys.executable
        real = _interpreter_behind(chosen)
        if real != chosen:  # a pyenv/asdf shim: the sandbox runs the interpreter it points at, first on PATH
            path.insert(0, str(Path(real).parent))
        return cls(os.path.abspath(real), tuple(dict.fromkeys([*path, *SYSTEM_PATH])), venv)

    def which(self, program: str) -> str | None:
        return shutil.which(program, path=os.pathsep.join(self.path))

    def mounts(self, command: str) -> list[str]:
        """Folders to mount read-only: each PATH folder itself (never its parent), a venv a PATH folder belongs to,
        the interpreter's installation and its base, and the folder of what the command's first word resolves to.
        Never a home folder or one above it; never a relative path."""
        found: set[str] = set()
        first = self.which(command.split()[0]) if command.split() else None
        targets = [self.python, *([first] if first and os.path.isabs(first) else [])]
        for folder in [*self.path, *(str(Path(t).parent) for t in targets),
                       *(str(Path(os.path.realpath(t)).parent) for t in targets)]:
            found.add(folder)
            venv = _venv_of(folder)
            if venv:
                found.add(venv)
        if self.virtual_env:
            found.add(self.virtual_env)
        found.update(_base_prefixes(self.python))
        if os.path.realpath(self.python) == os.path.realpath(sys.executable):  # what it imports from (.pth files too)
            found.update(p for p in sys.path if os.path.isabs(p) and os.path.isdir(p))
        found |= {os.path.realpath(p) for p in list(found)}
        return sorted(p for p in found if not _forbidden(p) and os.path.isdir(p))


def _interpreter_behind(python: str) -> str:
    """The interpreter a `python` on PATH really runs (asked on the host, where it is the caller's own): a shim script
    (pyenv, asdf) needs its manager's whole tree, the interpreter it ends in does not. Unchanged if it cannot say."""
    try:
        done = subprocess.run([python, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True,
                              timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return python
    real = done.stdout.strip()
    return real if done.returncode == 0 and os.path.isabs(real) and os.path.isfile(real) else python


def _base_prefixes(python: str) -> list[str]:
    """A venv's interpreter is a link to a base installation, whose standard library must be mounted too."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return sorted({sys.prefix, sys.base_prefix, sys.exec_prefix})
    bin_dir = Path(os.path.realpath(python)).parent
    prefix = bin_dir.parent
    cfg = Path(python).parent.parent / "pyvenv.cfg"
    found = [str(prefix)] if (prefix / "lib").is_dir() else []
    if cfg.is_file():
        for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                found.append(str(Path(value.strip()).parent))
    return found
