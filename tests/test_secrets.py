"""With a canary key, nothing under K2PROBE_HOME, no snippet and no command output contains it."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import route_env

CANARY = "sk-canary-7f3a9c2e5b1d4068aa11"


def test_canary_key_never_leaves_memory(cli, emulator, workdir: Path):
    server = emulator(api_key=CANARY)
    env = route_env(server, key=CANARY)
    (workdir / "k2probe.toml").write_text(
        f"[routes.team]\nbase_url = '{server.base_url}'\napi_key_env = 'TEAM_KEY'\n"
        "headers = { 'X-Api-Key' = 'hdr-secret-123456' }\n")
    outputs = []
    for args in (("smoke", "--json"), ("smoke",), ("chat", "hi", "--stream"), ("chat", "hi", "--json"),
                 ("doctor", "--json"), ("doctor", "--param", "temperature=0.5"), ("routes",), ("routes", "--json"),
                 ("quickstart", "--json"), ("chat", "hi", "--route", "team")):
        result = cli(*args, env={**env, "TEAM_KEY": CANARY})
        outputs.append(result.stdout + result.stderr)
        assert "Traceback" not in result.stderr
    for lang in ("curl", "python", "node"):
        result = cli("snippet", "--lang", lang, env=env)
        assert result.code == 0
        assert "AI_GATEWAY_API_KEY" in result.stdout  # the snippet reads the key from the environment
        outputs.append(result.stdout + result.stderr)
    # a wrong key is a secret too
    wrong = "sk-wrongcanary-99999999999"
    result = cli("doctor", env=route_env(server, key=wrong))
    outputs.append(result.stdout + result.stderr)
    text = "\n".join(outputs)
    assert CANARY not in text and wrong not in text
    assert "hdr-secret-123456" not in text
    files = [p for p in (workdir / "home").rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files) and any(p.suffix == ".html" for p in files)
    assert any(p.name.endswith(".json") for p in files)
    for path in files:
        data = path.read_bytes()
        assert CANARY.encode() not in data, path
        assert wrong.encode() not in data, path


PASTED = "sk-live-0a1b2c3d4e5f6a7b8c9d"


def test_a_key_pasted_into_api_key_env_is_refused_and_never_shown(cli, emulator, workdir: Path):
    server = emulator()
    (workdir / "k2probe.toml").write_text(f"[routes.team]\nbase_url = '{server.base_url}'\napi_key_env = '{PASTED}'\n")
    texts = []
    for args in (("doctor", "--route", "team"), ("routes",), ("routes", "--json"), ("chat", "hi", "--route", "team"),
                 ("smoke", "--route", "team", "--json"), ("quickstart", "--route", "team")):
        result = cli(*args, env=route_env(server))
        texts.append(result.stdout + result.stderr)
        assert result.code == 2, (args, result.stderr)
        assert "api_key_env holds the variable's *name*; this looks like the key itself" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not any(PASTED in text or PASTED[-12:] in text for text in texts)


@pytest.mark.parametrize("key", ["sk-trailing-canary-31415926535\r", "sk-trailing-canary-31415926535\n",
                                 "sk-trailing-canary-31415926535 ", "sk-inner-canary-314159\x1b26535"])
def test_a_key_with_whitespace_is_refused_before_any_request_and_never_shown(cli, emulator, workdir: Path, key):
    server = emulator(api_key=key.strip())
    env = route_env(server, key=key)
    texts = []
    for args in (("chat", "hi"), ("chat", "hi", "--stream", "--json"), ("smoke",), ("agent", "--task", "parse-total"),
                 ("quickstart",)):
        result = cli(*args, env=env)
        texts.append(result.stdout + result.stderr)
        assert result.code == 2, (args, result.stdout, result.stderr)
        assert ("AI_GATEWAY_API_KEY" in result.stderr and "it is not shown" in result.stderr.replace("\n", " ")) or \
            "spaces or quotes around it" in result.stderr, result.stderr
    doctor = cli("doctor", "--json", env=env)
    texts.append(doctor.stdout + doctor.stderr)
    assert doctor.code == 1 and doctor.json()["diagnosis"] == "invalid_key"
    assert server.state.requests_seen == 0
    assert not any(key.strip() in text for text in texts)


def test_every_line_printed_is_redacted():
    """The guarded stdout/stderr: a known key, in any quoted form a library may give it, never gets through."""
    import io

    from k2probe.core.redact import RedactingStream, remember

    key = "tok-\u00e9-raw-key-27182818\r"
    remember(key)
    sink = io.StringIO()
    stream = RedactingStream(sink)
    stream.write(f"Illegal header value b'Bearer {key}' / {key!r} / {key.strip()}\n")
    assert "27182818" not in sink.getvalue() and sink.getvalue().count("***") >= 3


@pytest.mark.parametrize("seed", range(5))
def test_a_stream_is_redacted_as_a_whole_however_it_is_cut(seed):
    """A known key, an sk- key, a Bearer token and a URL token, cut into random pieces (a piece of one character
    included): what StreamRedactor lets through, joined, is the redaction of the whole text, and holds none of them."""
    import random

    from k2probe.core.redact import StreamRedactor, redact, remember

    known = f"zq-stream-canary-{seed}-5b1d4068aa11"
    remember(known)
    text = (f"key {known}, again:{known}. Header Authorization: Bearer tok{seed}abcdef123 and "
            f"sk-abcdefghijklmnop{seed} and https://x.example/v1?api_key=u{seed}secretvalue&x=1 done\n") * 5
    chance = random.Random(seed)
    redactor, shown, at = StreamRedactor(), [], 0
    while at < len(text):
        size = chance.choice([1, 2, 3, 7, 13, 40])
        shown.append(redactor.feed(text[at:at + size]))
        at += size
    joined = "".join(shown) + redactor.finish()
    assert joined == redact(text)
    for secret in (known, f"tok{seed}abcdef123", f"abcdefghijklmnop{seed}", f"u{seed}secretvalue"):
        assert secret not in joined
    plain = "plain words go through " * 10
    early = StreamRedactor().feed(plain)  # only a tail is held back: the rest shows at once
    assert early and plain.startswith(early) and len(plain) - len(early) <= 120


@pytest.mark.parametrize("seed", range(40))
def test_a_value_with_nothing_to_redact_is_kept_and_any_other_is_redacted_string_by_string(seed):
    """Redactor.value searches a value's strings once, joined, before walking it: what it returns must be exactly
    what redacting every string (keys included) gives, wherever a secret hides — and the value itself when nothing
    is to be redacted."""
    import random

    from k2probe.core.redact import Redactor, remember

    rng = random.Random(seed)
    remember(f"known-secret-5a1f-{seed}")
    hidden = ["Bearer abcdef123456", "sk-" + "x" * 20, "https://h/x?api_key=zzzz", "ftp://u:pw@host",
              f"known-secret-5a1f-{seed}", "lone \udc80 surrogate"]
    plain = ["hello", "Bearer ab", "sk-short", "a?b=c", "bearer", "日本語", "", "://x"]

    def make(depth: int, secret: str | None) -> object:
        kind = rng.choice(["str", "dict", "list", "num"] if depth < 4 else ["str", "num"])
        if kind == "str":
            return rng.choice(plain)
        if kind == "num":
            return rng.choice([1, 2.5, None, True])
        if kind == "list":
            return [make(depth + 1, None) for _ in range(rng.randint(0, 4))]
        return {f"k{i}{rng.choice(plain)}": make(depth + 1, None) for i in range(rng.randint(0, 4))}

    redactor = Redactor()
    clean = {"messages": [make(0, None) for _ in range(5)]}
    assert redactor.value(clean) is clean  # nothing to redact: the value as it is
    for secret in hidden:
        where = rng.choice(["value", "key", "deep"])
        dirty = {"messages": [make(0, None) for _ in range(3)]}
        if where == "value":
            dirty["messages"].append({"content": f"see {secret} here"})
        elif where == "key":
            dirty[f"x {secret}"] = 1
        else:
            dirty["messages"].append([[{"a": [f"{secret}"]}]])
        got = redactor.value(dirty)
        assert got == redactor._walk(dirty)  # what redacting string by string gives
        assert secret not in repr(got) and got != dirty
    assert redactor.value(("a", "b")) == ["a", "b"]  # a tuple (not JSON) is walked, as before
