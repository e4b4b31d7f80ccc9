"""The tools the model gets: fixed names and arguments, schemas in plain JSON Schema, each run against the workspace."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import regex
from pydantic import BaseModel, ConfigDict, ValidationError

from k2probe.agent.workspace import PathDenied, Workspace, check_relative, git_env
from k2probe.sandbox.executor import Executor, executor_for
from k2probe.sandbox.isolation import Isolation, Limits, SandboxResult, isolation
from k2probe.sandbox.outcome import Verification
from k2probe.sandbox.runtime import Runtime

MAX_LINES = 400
MAX_READ_BYTES = 32 * 1024
MAX_FILE_BYTES = 1024 * 1024  # what read_file, search and write_file handle per file
MAX_PATCH_BYTES = 1024 * 1024
# one attempt's writes: the text write_file and apply_patch accept in all, and what the workspace may grow by (a patch
# can copy files: growth is judged on the tree). Over either, the call is refused as a tool error (`write_limit`) the
# model sees; the attempt goes on, and three refused calls in a row end it like any tool errors (`tool_failures`).
MAX_ATTEMPT_WRITE_BYTES = 8 * 1024 * 1024
MAX_GROWTH_BYTES = 16 * 1024 * 1024
PATCH_TIMEOUT_S = 30
SEARCH_BUDGET_S = 5.0
MAX_LIST = 500
MAX_MATCHES = 100


class ToolFailure(Exception):
    """A tool call that failed; `kind` counts it (invalid_json, schema, unknown_tool, patch_failed, path_denied,
    write_limit, tool_error)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Finished(Exception):
    """The model called finish."""

    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ListFiles(_Args):
    path: str = "."


class ReadFile(_Args):
    path: str
    start_line: int | None = None
    end_line: int | None = None


class Search(_Args):
    pattern: str
    path: str = "."


class WriteFile(_Args):
    path: str
    content: str


class ApplyPatch(_Args):
    patch: str


class RunTests(_Args):
    pass


class Finish(_Args):
    summary: str


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


_STR = {"type": "string"}
_INT = {"type": "integer"}
TOOL_SCHEMAS: list[dict[str, Any]] = [
    _fn("list_files", "List the files under a folder of the repository (recursively).",
        {"path": {**_STR, "description": "folder, relative to the repository root; default '.'"}}, []),
    _fn("read_file", "Read a text file, with line numbers; optionally only lines start_line..end_line (1-based).",
        {"path": _STR, "start_line": _INT, "end_line": _INT}, ["path"]),
    _fn("search", "Search files for a regular expression; returns path:line: text for each match.",
        {"pattern": _STR, "path": {**_STR, "description": "folder or file to search; default '.'"}}, ["pattern"]),
    _fn("write_file", "Create or overwrite a file with the given content.", {"path": _STR, "content": _STR},
        ["path", "content"]),
    _fn("apply_patch", "Apply a unified diff (paths relative to the repository root, a/ b/ prefixes allowed).",
        {"patch": _STR}, ["patch"]),
    _fn("run_tests", "Run the task's test command and return its output.", {}, []),
    _fn("finish", "Say the task is done, with a short summary of the change.", {"summary": _STR}, ["summary"]),
]
ARGS: dict[str, type[_Args]] = {"list_files": ListFiles, "read_file": ReadFile, "search": Search,
                                "write_file": WriteFile, "apply_patch": ApplyPatch, "run_tests": RunTests,
                                "finish": Finish}


@dataclass
class ToolOutput:
    text: str
    test_run: SandboxResult | None = None
    tests: str | None = None  # run_tests: passed | failed | error


class Tools(Protocol):
    """What the loop needs of a toolbox: one call at a time, a ToolOutput, or ToolFailure / Finished raised (a Toolbox
    here, or one held with its workspace on a cluster's node: agent/ray_space.py)."""

    async def call(self, name: str, raw_arguments: str) -> ToolOutput: ...


def parse_arguments(name: str, raw: str) -> _Args:
    """Check a call's name and arguments; ToolFailure says which way it is wrong."""
    if name not in ARGS:
        raise ToolFailure("unknown_tool", f"unknown tool {name!r}; the tools are: {', '.join(ARGS)}")
    try:
        data = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise ToolFailure("invalid_json", f"arguments of {name} are not valid JSON: {exc.msg} at {exc.pos}") from exc
    except RecursionError as exc:
        raise ToolFailure("invalid_json", f"arguments of {name} are nested too deeply") from exc
    if not isinstance(data, dict):
        raise ToolFailure("invalid_json", f"arguments of {name} must be a JSON object")
    try:
        return ARGS[name].model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors())
        raise ToolFailure("schema", f"arguments of {name} do not fit its schema: {problems}") from exc


class Toolbox:
    """Runs tool calls against one workspace through an executor, never blocking the event loop (file tools and
    test runs go through the executor; search and apply_patch run in a worker thread). Every failure, whatever
    raised it, comes back as a ToolFailure."""

    def __init__(self, workspace: Workspace, test_cmd: str, limits: Limits | None = None,
                 iso: Isolation | None = None, deadline: float | None = None, runtime: Runtime | None = None, *,
                 executor: Executor | None = None) -> None:
        self.ws = workspace
        self.test_cmd = test_cmd
        self.limits = limits or Limits()
        self.executor = executor or executor_for(iso or isolation())
        self.runtime = runtime or Runtime.own()
        self.deadline = deadline  # time.monotonic() by which test runs must end (the agent's --timeout)
        self.written = 0  # bytes of text write_file and apply_patch accepted in this attempt
        self.growth = 0  # what the workspace grew by since the attempt began (may go down: files made smaller)

    async def call(self, name: str, raw_arguments: str) -> ToolOutput:
        """Run one call; its text is always sendable (no lone surrogates from odd file names)."""
        args = parse_arguments(name, raw_arguments)
        try:
            tool = getattr(self, f"_{name}")
            output: ToolOutput = await (tool(args) if asyncio.iscoroutinefunction(tool)
                                        else asyncio.to_thread(tool, args))
        except PathDenied as exc:
            raise ToolFailure("path_denied", sendable(str(exc))) from exc
        except ToolFailure as exc:
            raise ToolFailure(exc.kind, sendable(exc.message)) from exc
        except Finished:
            raise
        except Exception as exc:  # whatever the model's input made a tool raise is the model's tool error
            raise ToolFailure("tool_error", sendable(f"{name} failed: {type(exc).__name__}: {exc}")[:2000]) from exc
        output.text = sendable(output.text)
        return output

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.ws.root).as_posix()

    async def _list_files(self, args: ListFiles) -> ToolOutput:
        base = self.ws.resolve(args.path)
        if not base.is_dir():
            raise ToolFailure("tool_error", f"{args.path} is not a folder")
        files, links = await self.executor.list(self.ws, args.path)
        shown = [self._rel(p) for p in files[:MAX_LIST]]
        more = f"\n… and {len(files) - MAX_LIST} more" if len(files) > MAX_LIST else ""
        skipped = f"\n({links} symbolic links not listed)" if links else ""
        return ToolOutput(("\n".join(shown) + more if shown else "(no files)") + skipped)

    async def _read_file(self, args: ReadFile) -> ToolOutput:
        if not self.ws.resolve(args.path).exists():
            raise ToolFailure("tool_error", f"no file {args.path}")
        lines = (await self.executor.read(self.ws, args.path, MAX_FILE_BYTES)).decode("utf-8").splitlines()
        start = max(1, args.start_line or 1)
        end = min(len(lines), args.end_line or len(lines), start + MAX_LINES - 1)
        body = "\n".join(f"{n:>5}  {lines[n - 1]}" for n in range(start, end + 1))
        if len(body) > MAX_READ_BYTES:
            body = body[:MAX_READ_BYTES] + "\n… [truncated]"
        note = f"\n… lines {end + 1}-{len(lines)} not shown" if end < len(lines) else ""
        return ToolOutput(f"{args.path} ({len(lines)} lines)\n{body}{note}")

    def _search(self, args: Search) -> ToolOutput:
        """Python-style regular expressions (the `regex` module), under a time budget: a pattern that backtracks
        forever is stopped, not waited for."""
        try:
            pattern = regex.compile(args.pattern)
        except (regex.error, RecursionError, OverflowError, ValueError) as exc:
            raise ToolFailure("tool_error", f"bad regular expression: {exc}") from exc
        deadline = time.monotonic() + SEARCH_BUDGET_S
        matches = []
        for path in self.ws.regular_files(args.path)[0]:
            try:
                text = self.ws.read_bytes(self._rel(path), MAX_FILE_BYTES).decode("utf-8")
            except (UnicodeDecodeError, PathDenied):
                continue
            for number, line in enumerate(text.splitlines(), 1):
                try:
                    found = pattern.search(line, timeout=max(deadline - time.monotonic(), 0.001))
                except TimeoutError as exc:
                    raise ToolFailure("tool_error", f"search stopped after {SEARCH_BUDGET_S:.0f} s: the pattern "
                                      "backtracks too much; simplify it") from exc
                if found:
                    matches.append(f"{self._rel(path)}:{number}: {line.strip()[:200]}")
            if len(matches) >= MAX_MATCHES:
                break
        return ToolOutput("\n".join(matches[:MAX_MATCHES]) or "no matches")

    def _budget(self, size: int, growth: int) -> None:
        """Refuse a write of `size` bytes of text growing the workspace by `growth` if it would pass the attempt's
        caps; nothing is written then."""
        if self.written + size > MAX_ATTEMPT_WRITE_BYTES:
            raise ToolFailure("write_limit", f"write refused: this attempt has written {self.written} bytes and may "
                              f"write {MAX_ATTEMPT_WRITE_BYTES} in all ({size} more asked); finish with what is there")
        if self.growth + growth > MAX_GROWTH_BYTES:
            raise ToolFailure("write_limit", f"write refused: the workspace has grown by {self.growth} bytes in this "
                              f"attempt and may grow by {MAX_GROWTH_BYTES} ({growth} more asked)")

    async def _write_file(self, args: WriteFile) -> ToolOutput:
        data = args.content.encode("utf-8")
        if len(data) > MAX_FILE_BYTES:
            raise ToolFailure("tool_error", f"content is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
        if self.ws.is_link_on_the_way(args.path):
            raise PathDenied(f"path {args.path!r} goes through a symbolic link")
        target = self.ws.resolve(args.path)
        try:
            old = os.lstat(target).st_size
        except FileNotFoundError:
            old = 0
        self._budget(len(data), len(data) - old)
        await self.executor.write(self.ws, args.path, data)
        self.written += len(data)
        self.growth += len(data) - old
        return ToolOutput(f"wrote {args.path} ({len(data)} bytes)")

    def _apply_patch(self, args: ApplyPatch) -> ToolOutput:
        """Try git apply, git apply --3way, then fuzzy patch; the tree is judged after each try (whatever the patch
        text claimed) and put back exactly when a try fails or leaves a link, a .git path or an oversized file."""
        size = len(args.patch.encode("utf-8", "surrogatepass"))
        if size > MAX_PATCH_BYTES:
            raise ToolFailure("patch_failed", f"the patch is over {MAX_PATCH_BYTES} bytes: send smaller patches")
        self._budget(size, 0)
        touched = patch_paths(args.patch)
        for path in touched:
            self.ws.resolve(path)
            if self.ws.is_link_on_the_way(path):
                raise PathDenied(f"the patch touches {path!r}, which is or goes through a symbolic link")
        patch = args.patch if args.patch.endswith("\n") else args.patch + "\n"
        with tempfile.NamedTemporaryFile("w", suffix=".diff", delete=False, errors="surrogateescape") as handle:
            handle.write(patch)
        fuzzy = ["patch", "-u", "-p1", "--fuzz=3", "--forward", "--batch", "--no-backup-if-mismatch", "-r", "-",
                 "-i", handle.name]
        attempts: list[tuple[str, Callable[[], subprocess.CompletedProcess[str]]]] = [
            ("git apply", lambda: self.ws.git("apply", "--whitespace=nowarn", handle.name)),
            ("git apply --3way", lambda: self.ws.git("apply", "--3way", "--whitespace=nowarn", handle.name)),
            ("fuzzy patch (patch --fuzz=3)", lambda: subprocess.run(
                fuzzy, cwd=self.ws.root, capture_output=True, text=True, timeout=PATCH_TIMEOUT_S,
                stdin=subprocess.DEVNULL, env=git_env(self.ws.git_dir, self.ws.root)))]
        errors = []
        before = self.ws.entries()
        try:
            with self.ws.guarded() as restore:
                for label, attempt in attempts:
                    try:
                        done = attempt()
                    except subprocess.TimeoutExpired:
                        errors.append(f"{label}: gave up after {PATCH_TIMEOUT_S} s")
                        restore()
                        continue
                    problem = self.ws.changes_problem(before, MAX_FILE_BYTES * 8, MAX_GROWTH_BYTES)
                    if problem is not None:
                        restore()
                        raise PathDenied(f"patch refused: {problem}")
                    grown = _size(self.ws.entries()) - _size(before)
                    if self.growth + grown > MAX_GROWTH_BYTES:
                        restore()
                        self._budget(0, grown)
                    if done.returncode == 0:
                        self.written += size
                        self.growth += grown
                        return ToolOutput(f"patch applied with {label}")
                    errors.append(f"{label}: {(done.stderr or done.stdout).strip()[:300]}")
                    restore()  # a failed try must leave no half-applied change behind
        finally:
            Path(handle.name).unlink(missing_ok=True)
        raise ToolFailure("patch_failed", "the patch does not apply: " + " | ".join(errors))

    async def _run_tests(self, _args: RunTests) -> ToolOutput:
        limits = self.limits if self.deadline is None else self.limits.within(self.deadline - time.monotonic())
        result, verdict = await self.executor.test(self.test_cmd, self.ws.root, limits, self.runtime, "tests")
        return ToolOutput(test_report(result, verdict), result, verdict.status)

    async def _finish(self, args: Finish) -> ToolOutput:
        raise Finished(args.summary)


def _size(entries: dict[str, tuple[int, int, int, int]]) -> int:
    return sum(info[1] for info in entries.values())


_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_NAMED = ("--- ", "+++ ", "rename from ", "rename to ", "copy from ", "copy to ")
_LINK_MODE = re.compile(r"^(?:new file mode|new mode|old mode|deleted file mode|index \S+)\s+0*120000\b")


def _strip_name(name: str) -> str | None:
    name = name.split("\t")[0].strip()
    if name.startswith('"') and name.endswith('"'):
        name = name[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1").decode()
    if name == "/dev/null":
        return None
    return name[2:] if name.startswith(("a/", "b/")) else name


def _header_names(patch: str) -> tuple[list[str], bool]:
    """The names in a patch's header lines (hunk bodies skipped by their counts), and whether it had file headers
    (---/+++ or diff --git)."""
    names: list[str] = []
    has_headers = False
    old = new = 0
    for line in patch.splitlines():
        if old > 0 or new > 0:  # inside a hunk: a removed "-- x" line is not a header
            if line.startswith("-"):
                old -= 1
            elif line.startswith("+"):
                new -= 1
            elif not line.startswith("\\"):
                old, new = old - 1, new - 1
            continue
        if hunk := _HUNK.match(line):
            old, new = int(hunk.group(1) or 1), int(hunk.group(2) or 1)
        elif _LINK_MODE.match(line):
            raise PathDenied("patches may not create or change symbolic links (mode 120000)")
        elif line.startswith("GIT binary patch"):
            raise ToolFailure("patch_failed", "binary patches are not accepted: write text files with write_file")
        elif line.startswith("diff --git "):
            has_headers = True
            names += line[len("diff --git "):].split()[:2]
        elif line.startswith(_NAMED):
            has_headers = has_headers or line.startswith(("--- ", "+++ "))
            names.append(line.split(" ", 2)[-1] if line.startswith(("rename", "copy")) else line[4:])
    return names, has_headers


def patch_paths(patch: str) -> list[str]:
    """Every path a patch names (---/+++, diff --git, rename and copy lines); ToolFailure if it names none,
    PathDenied if it creates a symbolic link, leaves the workspace or enters .git."""
    names, has_headers = _header_names(patch)
    paths = sorted({p for p in (_strip_name(n) for n in names) if p is not None})
    if not paths or not has_headers:
        raise ToolFailure("patch_failed", "no file headers (--- a/path, +++ b/path) in the patch")
    for path in paths:
        check_relative(path)
        if ".." in Path(path).parts:
            raise PathDenied(f"the patch names {path!r}, which leaves the repository")
    return paths


def sendable(text: str) -> str:
    """Text that encodes as UTF-8 (a file name that is not becomes \\udcff escapes), so the next request can go."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def test_report(result: SandboxResult, verdict: Verification) -> str:
    head = {"passed": "passed", "failed": "FAILED", "error": f"HARNESS ERROR ({verdict.reason})"}[verdict.status]
    text = f"$ {result.command}\n{head}: {result.summary()} in {result.duration_ms:.0f} ms\n{result.stdout}"
    if result.stderr.strip():
        text += f"\n[stderr]\n{result.stderr}"
    return text
