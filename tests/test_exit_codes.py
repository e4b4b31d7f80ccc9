"""`eval`'s exit code means something: 2 when what was asked cannot be judged (before any request), 1 when the run
judged less than it should have (errors over --max-error-rate) or a threshold does not hold, 0 otherwise."""

from __future__ import annotations

from .conftest import route_env


def test_thresholds_that_cannot_be_judged_are_refused_before_any_request(cli, emulator):
    server = emulator()
    env = route_env(server)
    for args, words in ((("--epochs", "3", "--fail-under", "pass_at_4=0.5"), "pass@4 cannot be judged with 3 epoch"),
                        (("--fail-under", "pass_at_x=0.5"), "pass@x cannot be judged"),
                        (("--fail-under", "error_rate=0.1", "--max-error-rate", "0.2"), "both say how many errors"),
                        (("--fail-under", "speed=0.5"), "unknown metric 'speed'")):
        result = cli("eval", "humaneval", "--limit", "2", *args, env=env)
        assert result.code == 2 and words in result.stderr, (args, result.stderr)
    assert server.state.requests_seen == 0  # nothing was asked, nothing paid for


def test_errors_over_the_allowance_exit_1_naming_their_cause_and_pass_k_holds_when_judged(cli, emulator):
    server = emulator(faults={"server_error": 1.0})
    result = cli("eval", "humaneval", "--limit", "2", "--json", env=route_env(server), timeout=300)
    # the route check's one request met a 5xx (not a configuration error): the run went on, and every sample is error
    assert result.code == 1, result.stderr
    assert "2 of 2 sample(s) ended as error" in result.stderr and "server_error" in result.stderr
    assert result.json()["broken_thresholds"] and result.json()["thresholds"]["error_rate"] == 0.0
    healthy = emulator()
    judged = cli("eval", "humaneval", "--limit", "2", "--epochs", "2", "--fail-under", "pass_at_2=0.5",
                 env=route_env(healthy), timeout=300)
    assert judged.code == 0, judged.stderr
    assert "pass@1" in judged.stdout and "pass@2" in judged.stdout  # every pass@k the epochs allow, not pass@1 alone


def test_a_relay_that_drops_reasoning_makes_eval_basic_exit_1_naming_the_cause(cli, workdir):
    (workdir / "k2probe.toml").write_text("[routes.relay]\nemulator = true\npersonality = 'lossy-relay'\n")
    result = cli("eval", "basic", "--tasks", "slugify,roman", "--route", "relay", timeout=300)
    assert result.code == 1, result.stderr
    assert "2 of 2 sample(s) ended as error" in result.stderr
    assert "reasoning_content is missing" in result.stderr, result.stderr
