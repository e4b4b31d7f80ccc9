"""The tools the model gets: fixed names and arguments, schemas in plain JSON Schema, each run against the workspace."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .sandbox import Limits, SandboxResult, prepare_workspace, run
from .workspace import GIT, PathDenied, Workspace

MAX_LINES = 400
MAX_READ_BYTES = 32 * 1024
MAX_LIST = 500
MAX_MATCHES = 100


class ToolFailure(Exception):
    """A tool call that failed; `kind` counts it (invalid_json, schema, unknown_tool, patch_failed, path_denied,
    tool_error)."""

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


def parse_arguments(name: str, raw: str) -> _Args:
    """Check a call's name and arguments; ToolFailure says which way it is wrong."""
    if name not in ARGS:
        raise ToolFailure("unknown_tool", f"unknown tool {name!r}; the tools are: {', '.join(ARGS)}")
    try:
        data = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise ToolFailure("invalid_json", f"arguments of {name} are not valid JSON: {exc.msg} at {exc.pos}") from exc
    if not isinstance(data, dict):
        raise ToolFailure("invalid_json", f"arguments of {name} must be a JSON object")
    try:
        return ARGS[name].model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors())
        raise ToolFailure("schema", f"arguments of {name} do not fit its schema: {problems}") from exc


class Toolbox:
    """Runs tool calls against one workspace."""

    def __init__(self, workspace: Workspace, test_cmd: str, limits: Limits | None = None) -> None:
        self.ws = workspace
        self.test_cmd = test_cmd
        self.limits = limits or Limits()

    def call(self, name: str, raw_arguments: str) -> ToolOutput:
        args = parse_arguments(name, raw_arguments)
        try:
            return getattr(self, f"_{name}")(args)  # type: ignore[no-any-return]
        except PathDenied as exc:
            raise ToolFailure("path_denied", str(exc)) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ToolFailure("tool_error", f"{name} failed: {exc}") from exc

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.ws.root).as_posix()

    def _files(self, base: Path) -> list[Path]:
        if base.is_file():
            return [base]
        return sorted(p for p in base.rglob("*") if p.is_file() and ".git" not in p.relative_to(self.ws.root).parts)

    def _list_files(self, args: ListFiles) -> ToolOutput:
        base = self.ws.resolve(args.path)
        if not base.is_dir():
            raise ToolFailure("tool_error", f"{args.path} is not a folder")
        files = self._files(base)
        shown = [self._rel(p) for p in files[:MAX_LIST]]
        more = f"\n… and {len(files) - MAX_LIST} more" if len(files) > MAX_LIST else ""
        return ToolOutput("\n".join(shown) + more if shown else "(no files)")

    def _read_file(self, args: ReadFile) -> ToolOutput:
        target = self.ws.resolve(args.path)
        if not target.is_file():
            raise ToolFailure("tool_error", f"no file {args.path}")
        lines = target.read_text(encoding="utf-8").splitlines()
        start = max(1, args.start_line or 1)
        end = min(len(lines), args.end_line or len(lines), start + MAX_LINES - 1)
        body = "\n".join(f"{n:>5}  {lines[n - 1]}" for n in range(start, end + 1))
        if len(body) > MAX_READ_BYTES:
            body = body[:MAX_READ_BYTES] + "\n… [truncated]"
        note = f"\n… lines {end + 1}-{len(lines)} not shown" if end < len(lines) else ""
        return ToolOutput(f"{args.path} ({len(lines)} lines)\n{body}{note}")

    def _search(self, args: Search) -> ToolOutput:
        try:
            pattern = re.compile(args.pattern)
        except re.error as exc:
            raise ToolFailure("tool_error", f"bad regular expression: {exc}") from exc
        matches = []
        for path in self._files(self.ws.resolve(args.path)):
            try:
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    if pattern.search(line):
                        matches.append(f"{self._rel(path)}:{number}: {line.strip()[:200]}")
            except UnicodeDecodeError:
                continue
            if len(matches) >= MAX_MATCHES:
                break
        return ToolOutput("\n".join(matches[:MAX_MATCHES]) or "no matches")

    def _write_file(self, args: WriteFile) -> ToolOutput:
        target = self.ws.resolve(args.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(args.content, encoding="utf-8")
        return ToolOutput(f"wrote {args.path} ({len(args.content.encode())} bytes)")

    def _apply_patch(self, args: ApplyPatch) -> ToolOutput:
        touched = {p for p in re.findall(r"^(?:---|\+\+\+) (?:[ab]/)?(\S+)", args.patch, flags=re.MULTILINE)
                   if p != "/dev/null"}
        if not touched:
            raise ToolFailure("patch_failed", "no file headers (--- a/path, +++ b/path) in the patch")
        before = {path: self.ws.resolve(path) for path in touched}
        snapshot = {path: target.read_bytes() if target.is_file() else None for path, target in before.items()}
        patch = args.patch if args.patch.endswith("\n") else args.patch + "\n"
        with tempfile.NamedTemporaryFile("w", suffix=".diff", delete=False) as handle:
            handle.write(patch)
        errors = []
        attempts = [("git apply", [*GIT, "apply", "--whitespace=nowarn", handle.name]),
                    ("git apply --3way", [*GIT, "apply", "--3way", "--whitespace=nowarn", handle.name]),
                    ("fuzzy patch (patch --fuzz=3)", ["patch", "-p1", "--fuzz=3", "--forward", "--batch",
                                                      "--no-backup-if-mismatch", "-r", "-", "-i", handle.name])]
        try:
            for label, command in attempts:
                done = subprocess.run(command, cwd=self.ws.root, capture_output=True, text=True, timeout=60)
                if done.returncode == 0:
                    return ToolOutput(f"patch applied with {label}")
                errors.append(f"{label}: {(done.stderr or done.stdout).strip()[:300]}")
                self._restore(before, snapshot)  # a failed try must leave no half-applied change behind
        finally:
            Path(handle.name).unlink(missing_ok=True)
        raise ToolFailure("patch_failed", "the patch does not apply: " + " | ".join(errors))

    @staticmethod
    def _restore(paths: dict[str, Path], snapshot: dict[str, bytes | None]) -> None:
        for path, target in paths.items():
            content = snapshot[path]
            if content is None:
                target.unlink(missing_ok=True)
            else:
                target.write_bytes(content)

    def _run_tests(self, _args: RunTests) -> ToolOutput:
        prepare_workspace(self.ws.root)
        result = run(self.test_cmd, self.ws.root, self.limits)
        return ToolOutput(test_report(result), result)

    def _finish(self, args: Finish) -> ToolOutput:
        raise Finished(args.summary)


def test_report(result: SandboxResult) -> str:
    verdict = "passed" if result.passed else "FAILED"
    text = f"$ {result.command}\n{verdict}: {result.summary()} in {result.duration_ms:.0f} ms\n{result.stdout}"
    if result.stderr.strip():
        text += f"\n[stderr]\n{result.stderr}"
    return text
