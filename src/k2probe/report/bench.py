"""`k2probe bench` on the terminal: the running step live, the line shown as each step ends, the sweep as a table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text

from k2probe.load.bench import BenchOutcome, step_label
from k2probe.load.live import Progress
from k2probe.report import terminal as render


def failures_text(failed: dict[str, int]) -> str:
    """Failures by kind in words, commonest first ("rate_limited 19, stream_cut 3"); "–" for none."""
    return ", ".join(f"{kind} {n}" for kind, n in sorted(failed.items(), key=lambda kv: (-kv[1], kv[0]))) or "–"


def ms(value: float | None) -> str:
    """A percentile for the terminal: one decimal, or – where nothing was measured."""
    return "–" if value is None else f"{value:.1f}"


@dataclass
class LiveStep:
    """The running step in one line, redrawn by rich's Live from its refresh thread."""

    progress: Progress

    def __rich__(self) -> Text:
        f = self.progress.figures()
        failed = sum(f["failed"].values())
        kinds = failures_text(f["failed"]) if f["failed"] else ""
        name = "TTFT" if self.progress.stream else "latency"
        timing = (f"{name} p50 {f['p50']:.1f} / p99 {f['p99']:.1f} ms (n={f['n']})" if f["n"] else f"{name} –")
        return Text.assemble((f"{f['label']}", "bold"), f" · {f['elapsed_s']:.1f} s · {f['sent']} sent · {f['ok']} ok · ",
                             (f"{failed} failed" + (f" ({kinds})" if kinds else ""), "red" if failed else ""),
                             f" · {f['rps']:.1f} req/s · {timing}")


def step_line(row: dict[str, Any], stream: bool) -> str:
    """One finished step in a line (shown on stderr while the sweep goes on)."""
    first = row["ttft_ms"] if stream else row["e2e_ms"]
    label = "TTFT" if stream else "latency"
    return (f"{step_label(row)}: {row['ok']}/{row['requests']} ok, {row['rps']:.1f} req/s, "
            f"{row['output_tps']:.0f} tok/s, {label} p50 {ms(first['p50'])} / p99 {ms(first['p99'])}"
            f" ms (n={first['n']}), failed {failures_text(row['failed']) if row['failed'] else 0}"
            + (f" · client CPU saturated on node {', '.join(row['saturated_nodes'])}"
               if row.get("saturated_nodes") else ""))


def print_steps(steps: list[dict[str, Any]], stream: bool, emulated: bool, knee: int | None = None) -> None:
    """The sweep as a table: one row per step, percentiles with their n; `knee`: the saturation sweep's, marked."""
    from rich import box
    from rich.table import Table

    table = Table(title="k2probe bench" + (" — built-in emulator: the pipeline, not a model" if emulated else ""),
                  caption="times in ms; p50/p99 over n answered", box=box.SIMPLE_HEAD, pad_edge=False)
    first_name = "TTFT" if stream else "latency"
    for column in ("step", "ok/sent", "failed", "req/s", "tok/s", f"{first_name} p50/p99", "ITL p50", "e2e p99",
                   "good", "n"):
        table.add_column(column, overflow="fold")  # never cut a figure short: fold it onto the next line
    for s in steps:
        first = s["ttft_ms"] if stream else s["e2e_ms"]
        share = s["goodput"]["share"]
        table.add_row(step_label(s) + (" ◀ knee" if knee is not None and s.get("concurrency") == knee else ""),
                      f"{s['ok']}/{s['requests']}",
                      failures_text(s["failed"]), f"{s['rps']:.1f}",
                      f"{s['output_tps']:.0f}", f"{ms(first['p50'])}/{ms(first['p99'])}",
                      ms(s["itl_ms"]["p50"]), ms(s["e2e_ms"]["p99"]),
                      "–" if share is None else f"{100 * share:.0f}%", str(first["n"]))
    # piped, rich assumes 80 columns; a file or a pager takes the table whole rather than folded
    console = render.out if render.out.is_terminal else render.SafeConsole(width=140)
    console.print(table)
    for s in steps:
        merged = s.get("ttft_merged")
        # where the server stamps its own TTFT, the merge is shown to matter only if the two disagree
        error = s["ttft_error_ms"]
        matters = not error["n"] or (error["p90"] or 0) > 1.0
        if merged and merged > 0.1 and matters:
            render.err.print(f"{step_label(s)}: {100 * merged:.0f}% of first tokens were read over a ms after they "
                             "arrived, together with later tokens; the kernel stamps a read by its last bytes, so "
                             "where the server sent them apart those TTFTs read late by up to the gap. Use more "
                             "--workers, or fewer streams per step.", style="yellow")


def _lengths(value: Any) -> str:
    """A length setting in words: "256", or "512 ± 128 (normal, seeded)"; older runs kept a bare number."""
    if isinstance(value, dict):
        return f"{value['mean']:g}" if not value.get("stdev") else f"{value['mean']:g} ± {value['stdev']:g} (normal)"
    return str(value)


def settings_text(settings: dict[str, Any]) -> str:
    """What the sweep sent and judged by, in words: a figure means nothing without them."""
    per_step = (f"{settings['requests']} requests per step" if settings.get("requests")
                else f"{settings.get('duration_s')} s per step")
    if settings.get("concurrency") == "auto":
        per_step += " (a saturation step: at least 4 per user in flight)"
    prompts = "each prompt numbered, no cache hits" if settings.get("unique_prompts", True) else "one prompt repeated"
    if settings.get("dataset"):
        source = f"prompts from {settings['dataset']} ({settings.get('dataset_prompts')} of them, cycled"
        prompts = source + (", each numbered)" if settings.get("unique_prompts", True) else ", sent as written)")
    else:
        prompts = f"prompt ≈{_lengths(settings.get('prompt_tokens'))} tokens ({prompts})"
    slo = settings.get("slo_ms") or {}
    judged = ("SLO: " + ", ".join(f"{k} ≤ {v:g} ms" for k, v in slo.items()) if slo
              else "no SLO given: goodput counts every answered request")
    drawn = any(isinstance(settings.get(k), dict) and settings[k].get("stdev") for k in ("prompt_tokens", "max_tokens"))
    seed = f" (lengths drawn with seed {settings.get('seed')})" if drawn else ""
    where = " on each Ray node" if settings.get("executor") == "ray" else ""
    return (f"{'streamed' if settings.get('stream', True) else 'not streamed'}, {prompts}, max_tokens "
            f"{_lengths(settings.get('max_tokens'))}, {per_step}, {settings.get('workers')} client "
            f"process(es){where}{seed}; {judged}")


def warmup_text(warmup: dict[str, Any] | None) -> str:
    """The unmeasured warm-up in words."""
    if not warmup:
        return "no warm-up"
    failed = f", failed {failures_text(warmup['failed'])}" if warmup["failed"] else ""
    return (f"warm-up: {warmup['requests']} requests ({warmup['ok']} ok{failed}) at concurrency "
            f"{warmup['concurrency']}, left out of every figure")


def knee_text(sweep: dict[str, Any]) -> str:
    """The saturation sweep's outcome in a line: the knee's load and figures, and why the sweep stopped."""
    knee = sweep.get("knee")
    if knee is None:
        return f"no knee: every step broke ({sweep['stopped']})"
    name = "TTFT" if knee["metric"] == "ttft" else "latency"
    return (f"knee at concurrency {knee['concurrency']}: {knee['rps']:.1f} req/s, goodput {knee['goodput_rps']:.1f}/s, "
            f"{knee['output_tps']:.0f} tok/s, {name} p50 {ms(knee['p50_ms'])} / p99 {ms(knee['p99_ms'])} ms "
            f"({sweep['stopped']})")


def rule_text(sweep: dict[str, Any]) -> str:
    """The knee rule the sweep applied, in words."""
    from k2probe.load.sweep import KneeRule

    return "saturation sweep: " + KneeRule(**sweep["rule"]).words()


def cluster_text(cluster: dict[str, Any]) -> str:
    """Where the client processes ran (--executor ray), and which nodes were left out and why."""
    used = ", ".join(f"{n['node']} ({n['address']}, {n['workers']} worker(s))" for n in cluster["nodes"])
    left = "; ".join(f"node {n['node']} ({n['address']}) left out: {n['why']}" for n in cluster["left_out"])
    return f"load sent from {len(cluster['nodes'])} Ray node(s): {used}" + (f"; {left}" if left else "")


def node_lines(step: dict[str, Any], stream: bool) -> list[str]:
    """A step's figures node by node (--executor ray): each node's own requests, percentiles and client CPU."""
    name, key = ("TTFT", "ttft_ms") if stream else ("latency", "e2e_ms")
    return [f"{step_label(step)} node {n['node']}: {n['ok']}/{n['requests']} ok, {name} p50 {ms(n[key]['p50'])} / "
            f"p99 {ms(n[key]['p99'])} ms, client CPU {100 * n['client_cpu']:.0f}% of {n['cores_used']} core(s)"
            for n in step.get("nodes") or []]


def saturation_text(step: dict[str, Any]) -> str:
    """The warning for a step where a node's client CPU saturated: its figures measure the client."""
    from k2probe.load.ray_workers import SATURATED

    return (f"{step_label(step)}: the client CPU of node {', '.join(step['saturated_nodes'])} was over "
            f"{100 * SATURATED:.0f}% of the cores its workers used, so its figures measure the client as much as the "
            "route: add --workers (cores permitting) or nodes")


def print_outcome(outcome: BenchOutcome) -> None:
    """The table, then what was left out (the warm-up) and, for --concurrency auto, the knee."""
    knee = (outcome.sweep or {}).get("knee")
    print_steps(outcome.steps, outcome.stream, outcome.emulated, knee["concurrency"] if knee else None)
    render.err.print(settings_text(outcome.settings), style="dim", markup=False, highlight=False)
    render.err.print(warmup_text(outcome.warmup), style="dim", markup=False, highlight=False)
    if outcome.cluster is not None:
        render.err.print(cluster_text(outcome.cluster), style="dim", markup=False, highlight=False)
        for step in outcome.steps:
            for line in node_lines(step, outcome.stream):
                render.out.print(line, markup=False, highlight=False)
            if step.get("saturated_nodes"):
                render.err.print(saturation_text(step), style="yellow", markup=False, highlight=False)
    if outcome.sweep is not None:
        render.out.print(knee_text(outcome.sweep), markup=False, highlight=False)
