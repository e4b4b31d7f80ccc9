"""The agent's tools: schemas, argument checks by failure type, path confinement, and the patch fallbacks."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from k2probe.agent.tools import TOOL_SCHEMAS, Finished, Toolbox, ToolFailure
from k2probe.agent.workspace import Workspace
from k2probe.emulator.contract import TOOL_NAME


def call(box: Toolbox, name: str, raw: str):
    """One tool call, run on an event loop of its own (the toolbox never blocks the loop it runs on)."""
    return asyncio.run(box.call(name, raw))


@pytest.fixture
def box(tmp_path: Path):
    repo = tmp_path / "src"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "mod.py").write_text("".join(f"line {i}\n" for i in range(1, 21)))
    ws = Workspace(repo)
    yield Toolbox(ws, "python -c 'print(1)'")
    ws.cleanup()


def test_schemas_fit_moonshots_dialect():
    names = [t["function"]["name"] for t in TOOL_SCHEMAS]
    assert names == ["list_files", "read_file", "search", "write_file", "apply_patch", "run_tests", "finish"]
    for tool in TOOL_SCHEMAS:
        assert TOOL_NAME.match(tool["function"]["name"])
        params = tool["function"]["parameters"]
        assert params["type"] == "object" and "anyOf" not in json.dumps(params) and "$ref" not in json.dumps(params)


@pytest.mark.parametrize(("name", "raw", "kind"), [
    ("grep", "{}", "unknown_tool"),
    ("read_file", '{"path": ', "invalid_json"),
    ("read_file", "[1]", "invalid_json"),
    ("read_file", "{}", "schema"),
    ("read_file", '{"path": 3}', "schema"),
    ("read_file", '{"path": "a", "colour": 1}', "schema"),
    ("read_file", '{"path": "../outside"}', "path_denied"),
    ("write_file", '{"path": "/etc/passwd", "content": ""}', "path_denied"),
    ("read_file", '{"path": ".git/config"}', "path_denied"),
    ("read_file", '{"path": "nope.py"}', "tool_error"),
])
def test_failures_by_type(box, name, raw, kind):
    with pytest.raises(ToolFailure) as caught:
        call(box, name, raw)
    assert caught.value.kind == kind


def test_read_search_write(box):
    assert "    3  line 3" in call(box, "read_file", '{"path": "pkg/mod.py", "start_line": 3, "end_line": 4}').text
    assert "pkg/mod.py:12: line 12" in call(box, "search", '{"pattern": "line 1[2]"}').text
    call(box, "write_file", '{"path": "new/file.txt", "content": "hi"}')
    assert "new/file.txt" in call(box, "list_files", "{}").text
    with pytest.raises(Finished):
        call(box, "finish", '{"summary": "done"}')


def _patch(old: str, new: str, line: int) -> str:
    return (f"--- a/pkg/mod.py\n+++ b/pkg/mod.py\n@@ -{line},3 +{line},3 @@\n"
            f" line {line}\n-{old}\n+{new}\n line {line + 2}\n")


def test_patch_clean_offset_and_fuzzy(box):
    assert call(box, "apply_patch", json.dumps({"patch": _patch("line 6", "six", 5)})).text.endswith("git apply")
    # the hunk header says line 2 but the text is at line 9: git apply finds it by offset
    offset = _patch("line 10", "ten", 9).replace("@@ -9,3 +9,3 @@", "@@ -2,3 +2,3 @@")
    assert call(box, "apply_patch", json.dumps({"patch": offset})).text.endswith("git apply")
    # a context line that no longer matches: only the fuzzy patch applies it
    fuzzy = "--- a/pkg/mod.py\n+++ b/pkg/mod.py\n@@ -14,3 +14,3 @@\n line 14\n-line 15\n+fifteen\n line 16 CHANGED\n"
    assert call(box, "apply_patch", json.dumps({"patch": fuzzy})).text == "patch applied with fuzzy patch (patch --fuzz=3)"
    text = (box.ws.root / "pkg" / "mod.py").read_text()
    assert "six\n" in text and "ten\n" in text and "fifteen\n" in text


def test_a_patch_that_does_not_apply_changes_nothing(box):
    before = (box.ws.root / "pkg" / "mod.py").read_text()
    bad = "--- a/pkg/mod.py\n+++ b/pkg/mod.py\n@@ -1,2 +1,2 @@\n-not here\n-nor here\n+x\n+y\n"
    with pytest.raises(ToolFailure) as caught:
        call(box, "apply_patch", json.dumps({"patch": bad}))
    assert caught.value.kind == "patch_failed" and "git apply" in caught.value.message
    assert (box.ws.root / "pkg" / "mod.py").read_text() == before
    assert box.ws.diff() == ""


def test_run_tests_reports(box):
    out = call(box, "run_tests", "{}")
    assert out.test_run is not None and out.test_run.passed and "passed: exit 0" in out.text


def test_special_files_are_refused_without_blocking(box):
    """A FIFO or a device inside the workspace: refused at once (a FIFO opened for reading would block forever)."""
    os.mkfifo(box.ws.root / "pipe")
    os.symlink("/dev/zero", box.ws.root / "pkg" / "zero")
    for path in ("pipe", "pkg/zero"):
        with pytest.raises(ToolFailure) as caught:
            call(box, "read_file", json.dumps({"path": path}))
        assert caught.value.kind == "path_denied"
    assert "pkg/mod.py" in call(box, "search", '{"pattern": "line 1"}').text
    listed = call(box, "list_files", "{}").text
    assert "pipe" not in listed and "(1 symbolic links not listed)" in listed


def test_a_backtracking_pattern_is_stopped_not_waited_for(box):
    call(box, "write_file", json.dumps({"path": "a.txt", "content": "a" * 40 + "!"}))
    started = time.monotonic()
    with pytest.raises(ToolFailure) as caught:
        call(box, "search", json.dumps({"pattern": "(a|aa)+$"}))
    assert caught.value.kind == "tool_error" and "backtracks" in caught.value.message
    assert time.monotonic() - started < 15


def test_odd_names_and_deep_json_are_tool_errors_or_sendable_text(box):
    out = call(box, "write_file", json.dumps({"path": "\udcff.txt", "content": "x"}))
    listed = call(box, "list_files", "{}").text
    for text in (out.text, listed):
        text.encode("utf-8")  # the next request can carry it
    assert "\\udcff.txt" in listed
    with pytest.raises(ToolFailure) as caught:
        call(box, "read_file", "[" * 100000)
    assert caught.value.kind == "invalid_json"


@pytest.mark.parametrize("patch", [
    "diff --git a/lnk b/lnk\nnew file mode  120000\n--- /dev/null\n+++ b/lnk\n@@ -0,0 +1 @@\n+/etc/passwd\n"
    "\\ No newline at end of file\n",
    "diff --git a/lnk b/lnk\nnew file mode 0120000\n--- /dev/null\n+++ b/lnk\n@@ -0,0 +1 @@\n+/etc/passwd\n",
    '--- "q/sub/\\056git/config" x\n+++ "q/sub/\\056git/config" x\n@@ -0,0 +1 @@\n+[core]\n',
    "--- /dev/null\n+++ q/sub/.git/config\n@@ -0,0 +1 @@\n+[core]\n",
])
def test_patches_are_judged_on_the_tree_they_leave(box, patch):
    """Whatever the header text claims, a patch that leaves a link or a .git path behind is refused and undone."""
    before = box.ws.entries()
    with pytest.raises(ToolFailure) as caught:
        call(box, "apply_patch", json.dumps({"patch": patch}))
    assert caught.value.kind in ("path_denied", "patch_failed"), caught.value.message
    assert box.ws.entries().keys() == before.keys()
    assert not any(p.is_symlink() for p in box.ws.root.rglob("*"))


def test_binary_and_oversized_patches_are_refused(box):
    binary = "diff --git a/b.bin b/b.bin\nnew file mode 100644\nGIT binary patch\nliteral 10\nRcmZ?wbv\n\nliteral 0\n"
    for patch, words in ((binary, "binary patches"), ("--- a/x\n+++ b/x\n" + "+" * (2 << 20), "over")):
        with pytest.raises(ToolFailure) as caught:
            call(box, "apply_patch", json.dumps({"patch": patch}))
        assert caught.value.kind == "patch_failed" and words in caught.value.message


def test_one_attempt_writes_at_most_its_cap(box):
    """write_file's text counts against the attempt's cap, overwrites included; past it, nothing is written."""
    from k2probe.agent.tools import MAX_ATTEMPT_WRITE_BYTES, MAX_FILE_BYTES

    chunk = "x" * MAX_FILE_BYTES
    for n in range(MAX_ATTEMPT_WRITE_BYTES // MAX_FILE_BYTES):
        call(box, "write_file", json.dumps({"path": f"file{n % 2}.txt", "content": chunk}))
    with pytest.raises(ToolFailure) as caught:
        call(box, "write_file", json.dumps({"path": "other.txt", "content": "y"}))
    assert caught.value.kind == "write_limit" and "may write 8388608 in all" in caught.value.message
    assert not (box.ws.root / "other.txt").exists()
    with pytest.raises(ToolFailure) as caught:  # a patch is text written too
        call(box, "apply_patch", json.dumps({"patch": "--- a/pkg/mod.py\n+++ b/pkg/mod.py\n@@ -1 +1 @@\n-line 1\n+one\n"}))
    assert caught.value.kind == "write_limit"
    assert (box.ws.root / "pkg" / "mod.py").read_text().startswith("line 1\n")


def test_patches_that_copy_files_stop_at_the_attempts_growth_cap(box):
    """A few bytes of patch can copy a big file: the growth is judged on the tree, summed over the attempt."""
    from k2probe.agent.tools import MAX_FILE_BYTES, MAX_GROWTH_BYTES

    call(box, "write_file", json.dumps({"path": "big.txt", "content": "z\n" * (MAX_FILE_BYTES // 2)}))
    copies, refused = 0, None
    for n in range(MAX_GROWTH_BYTES // MAX_FILE_BYTES + 2):
        patch = f"diff --git a/big.txt b/copy{n}.txt\nsimilarity index 100%\ncopy from big.txt\ncopy to copy{n}.txt\n"
        try:
            call(box, "apply_patch", json.dumps({"patch": patch}))
            copies += 1
        except ToolFailure as failure:
            refused = failure
            break
    assert refused is not None and refused.kind == "write_limit", refused
    assert copies == MAX_GROWTH_BYTES // MAX_FILE_BYTES - 1  # the first write's MiB and the copies fill the cap
    grown = sum(p.stat().st_size for p in box.ws.root.rglob("*.txt"))
    assert grown <= MAX_GROWTH_BYTES and not (box.ws.root / f"copy{copies}.txt").exists()
