"""The one rule for a route's profile (client.routeprofile): each source in its order — a gateway's /models entry, an
answer's model field — what the commands then send, and a route that cannot be asked (never kept, asked again)."""

from __future__ import annotations

import json
from typing import Any

from .conftest import route_env
from .fakeserver import FakeServer, JsonHandler

ANSWER = {"id": "x", "object": "chat.completion", "created": 0, "model": "team-coder",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


class Gateway(FakeServer):
    """A gateway whose /models entry for `team-coder` may name the model behind it, with no /model/info; it keeps
    every request (path and body) and can refuse every one with `status`."""

    def __init__(self, entry: dict[str, Any], status: int = 200, served: str = "team-coder") -> None:
        self.seen: list[tuple[str, Any]] = []
        owner = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                owner.seen.append((self.path, None))
                if status != 200:
                    self.send_response(status)
                    self.end_headers()
                elif self.path.endswith("/models"):
                    self.send_json({"object": "list", "data": [{"id": "team-coder", **entry}]})
                else:
                    self.send_response(404)
                    self.end_headers()

            def do_POST(self) -> None:
                owner.seen.append((self.path, self.read_json()))
                if status != 200:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(json.dumps({"error": {"message": "no"}}).encode())
                    return
                self.send_json({**ANSWER, "model": served})

        self.serve(Handler)

    def posts(self) -> list[Any]:
        return [body for path, body in self.seen if body is not None]


def test_a_models_entry_naming_kimi_gives_the_profile_without_a_request_and_chat_sends_by_it(cli):
    with Gateway({"owned_by": "team", "root": "moonshotai/kimi-k2.6"}) as gateway:
        env = route_env(gateway, model="team-coder")
        result = cli("chat", "hi", "--param", "temperature=0.2", "--json", env=env)
        assert result.code == 0, result.stderr
        assert "/models entry for it says" in result.stderr and "kimi-k2.6 profile is used (inferred)" in result.stderr
        [sent] = gateway.posts()  # the gateway's word was enough: no request was spent on the profile
        assert "temperature" not in sent and sent["max_tokens"] == 32768  # sent as the Kimi profile demands
        assert result.json()["cost_usd"] > 0


def test_an_answers_model_field_is_the_last_source_and_is_asked_once(cli):
    with Gateway({"owned_by": "team"}, served="kimi-k2.7-code") as gateway:
        env = route_env(gateway, model="team-coder")
        first = cli("smoke", "--json", env=env)
        assert first.code == 0, first.stderr
        assert "an answer's model field names 'kimi-k2.7-code'" in first.stderr
        assert len(gateway.posts()) == 2 and gateway.posts()[0]["max_tokens"] == 16  # the short question, then smoke
        second = cli("chat", "hi", "--json", env=env)
        assert second.code == 0 and "profiles.json" in second.stderr
        assert len(gateway.posts()) == 3  # the kept answer: no second question
        assert gateway.posts()[-1]["max_tokens"] == 32768


def test_a_generic_answer_is_kept_generic_and_said(cli, workdir):
    with Gateway({"owned_by": "team"}, served="gpt-team") as gateway:
        env = route_env(gateway, model="team-coder")
        result = cli("chat", "hi", "--param", "temperature=0.2", "--json", env=env)
        assert result.code == 0, result.stderr
        assert "matches no known profile" in result.stderr and "names 'gpt-team'" in result.stderr
        assert gateway.posts()[-1]["temperature"] == 0.2  # the generic profile passes sampling through
        kept = json.loads((workdir / "home" / "profiles.json").read_text())
        assert [e["profile"] for e in kept["routes"].values()] == ["openai-compatible"]
        assert "sk-" not in json.dumps(kept)  # the route's fingerprint, never its key


def test_a_route_that_cannot_be_asked_gets_the_generic_profile_saying_why_and_is_asked_again(cli, workdir):
    with Gateway({}, status=503) as gateway:
        env = route_env(gateway, model="team-coder")
        first = cli("chat", "hi", "--json", env=env)
        assert first.code != 0 and "could not be asked what is behind it" in first.stderr
        assert "Traceback" not in first.stderr
        assert not (workdir / "home" / "profiles.json").exists()  # nothing learnt, nothing kept
        asked = sum(1 for path, _ in gateway.seen if path.endswith("/model/info"))
        cli("chat", "hi", "--json", env=env)
        assert sum(1 for path, _ in gateway.seen if path.endswith("/model/info")) == 2 * asked


def test_doctor_asks_the_route_afresh(cli, emulator):
    server = emulator(personality="litellm", aliases={"kimi-moonshot": "kimi-k2.7-code"})
    env = route_env(server, model="kimi-moonshot")
    assert "/model/info maps it" in cli("chat", "hi", env=env).stderr
    assert "profiles.json" not in cli("doctor", "--json", env=env).stderr  # not the kept answer: asked again
