"""The proof of a failed test run, as a person reads it: each failing test's block of pytest's report (the failing
line marked `>`, the `E` lines with the values compared, the file and line), without frames of k2probe's own, and the
run's last line. Read from plain text (the test run's output), so it works on any stored verdict."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

_HEADER = re.compile(r"^_{3,} (.+?) _{3,}$")
_SECTION = re.compile(r"^={3,}")
_OWN = re.compile(r"(site-packages|src)/k2probe/|k2probe/(sandbox|guard)/|<string>.*in serve|forkrun\.py")
_WHERE = re.compile(r"^(\S+?):(\d+): (\w[\w.]*)")
MAX_BLOCK_LINES = 40


@dataclass
class FailedTest:
    """One failing test: its name, the line pytest marks `>`, the `E` lines, and where (file:line)."""

    test: str
    line: str = ""
    error: list[str] = field(default_factory=list)
    where: str = ""
    block: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"test": self.test, "line": self.line, "error": self.error, "where": self.where}


def own_frames_removed(text: str) -> str:
    """`text` less the lines that name k2probe's own files (and a traceback frame's source line under each)."""
    out: list[str] = []
    skip_next = False
    for line in text.splitlines():
        if skip_next:
            skip_next = False
            if line.startswith("    "):
                continue
        if _OWN.search(line):
            skip_next = line.lstrip().startswith("File ")
            continue
        out.append(line)
    return "\n".join(out)


def failed_tests(output: str) -> list[FailedTest]:
    """Each failing test's block of a pytest report (the FAILURES and ERRORS sections), k2probe's lines left out."""
    found: list[FailedTest] = []
    current: FailedTest | None = None
    for line in output.splitlines():
        header = _HEADER.match(line)
        if header:
            current = FailedTest(header.group(1))
            found.append(current)
            continue
        if _SECTION.match(line):
            current = None
            continue
        if current is None or _OWN.search(line):
            continue
        current.block.append(line)
        if line.startswith(">") and not current.error:
            current.line = line[1:].strip()
        elif line.startswith("E ") and len(current.error) < 8:
            current.error.append(line[1:].rstrip())
        elif (where := _WHERE.match(line)) is not None:
            current.where = f"{where.group(1).rsplit('/', 1)[-1]}:{where.group(2)}"
    for test in found:
        test.error = textwrap.dedent("\n".join(test.error)).splitlines()
        while test.block and not test.block[-1].strip():
            test.block.pop()
        test.block = test.block[-MAX_BLOCK_LINES:]
    return found


def proof_of(output: str) -> tuple[str, list[FailedTest]]:
    """The proof to keep for a failed run: the failing tests' blocks and the run's last line; when pytest said no
    test failed by name (a collection error, another runner), the output itself, k2probe's lines left out."""
    tests = failed_tests(output)
    last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
    if not tests:
        return own_frames_removed(output), []
    parts = [f"{t.test}\n" + "\n".join(t.block) for t in tests]
    if last and not _SECTION.match(last):
        parts.append(last)
    return "\n\n".join(parts), tests
