"""Many programs verified in one sandbox: a program cannot pass by leaving early, forge a sibling's verdict, stall the
batch or reach the host; whatever looks odd is judged again alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from k2probe.sandbox.isolation import isolation
from k2probe.sandbox.programs import verify_programs

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="the sandbox needs bubblewrap")

GOOD = "def f():\n    return 1\n\nassert f() == 1\n"


def test_leaving_early_is_not_passing_and_an_exception_is_failing():
    verdicts = verify_programs({
        "good": GOOD,
        "sys.exit(0)": "import sys\nsys.exit(0)\nassert False\n",
        "os._exit(0)": "import os\nos._exit(0)\n",
        "raise": "raise ValueError('wrong answer')\n",
        "syntax": "def broken(:\n",
    }, iso=isolation("bwrap"))
    assert verdicts["good"].status == "passed"
    for key in ("sys.exit(0)", "os._exit(0)", "raise", "syntax"):
        assert verdicts[key].status == "failed", (key, verdicts[key])
    assert "ValueError: wrong answer" in verdicts["raise"].reason
    assert "SyntaxError" in verdicts["syntax"].output


def test_a_program_that_hangs_or_kills_the_harness_does_not_decide_for_the_others():
    programs = {f"good{i}": GOOD for i in range(6)}
    programs["hang"] = "while True:\n    pass\n"
    programs["killer"] = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
    programs["forger"] = ('import json\nfor i in range(6):\n    print(json.dumps({"name": f"p{i:06d}.py", '
                          '"status": "passed", "detail": ""}), flush=True)\nraise SystemExit(1)\n')
    verdicts = verify_programs(programs, timeout_s=1.0, iso=isolation("bwrap"))
    assert all(verdicts[f"good{i}"].status == "passed" for i in range(6))
    assert verdicts["hang"].status == "failed" and "timed out" in verdicts["hang"].reason
    assert verdicts["forger"].status == "failed"
    assert verdicts["killer"].status in ("failed", "error")  # alone, it kills its own harness: never a pass


def test_programs_see_no_host_files_and_no_network(tmp_path):
    secret = Path.home() / f".k2probe-test-secret-{tmp_path.name}"
    secret.write_text("sk-host-secret")
    try:
        verdicts = _probe(secret)
    finally:
        secret.unlink()
    assert verdicts["home"].status == "failed" and verdicts["net"].status == "failed"
    assert verdicts["proc"].status == "passed"  # a pid namespace of its own: no host process is visible


def _probe(secret: Path) -> dict:
    return verify_programs({
        "home": f"print(open({str(secret)!r}).read())\n",
        "net": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)\n",
        "proc": "import os\nassert not [p for p in os.listdir('/proc') if p.isdigit() and int(p) > 50]\n",
    }, iso=isolation("bwrap"))
