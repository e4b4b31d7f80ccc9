"""The terminal view of `compare`: the routes' metrics side by side, each paired difference in a line, the causes of
the worse route's non-passes, and the cheapest route per accepted task. The lines are the viewer's too."""

from __future__ import annotations

from rich.table import Table

from k2probe.eval.compare import Comparison
from k2probe.report.evaluation import ROWS
from k2probe.report.terminal import out


def difference_lines(result: Comparison) -> list[str]:
    """Each paired difference, its causes, the method and the cheapest route, as plain lines of text."""
    lines = []
    for diff in result.differences:
        acc, verified = diff.accepted_difference, diff.verified_difference
        if acc is not None:
            reviews = f", {diff.reviewed_pairs} decided by a review" if diff.reviewed_pairs else ""
            lines.append(f"{diff.route} vs {diff.against}: accepted {100 * acc.value:+.1f} points "
                         f"[{100 * acc.ci95[0]:+.1f}, {100 * acc.ci95[1]:+.1f}] (exact McNemar p={acc.mcnemar_p:.3g}) "
                         f"on {diff.judged_pairs} paired samples{reviews}; errors {diff.error_difference:+d}")
            if verified is not None and diff.reviewed_pairs:
                lines.append(f"    verified only: {100 * verified.value:+.1f} points [{100 * verified.ci95[0]:+.1f}, "
                             f"{100 * verified.ci95[1]:+.1f}] (p={verified.mcnemar_p:.3g})")
        else:
            lines.append(f"{diff.route} vs {diff.against}: no paired judged samples; errors {diff.error_difference:+d}")
        trigger = diff.tool_trigger_vs_reference
        if trigger and trigger.get("f1") is not None:
            lines.append(f"    tool-call trigger against {diff.against}'s decisions: F1 {trigger['f1']:.3f} "
                         f"(n={trigger['n']})")
        lines += [f"    {cause.samples} sample(s) passed on {diff.against} but not here: {cause.reason}"
                  for cause in diff.causes]
    if result.differences and result.differences[0].accepted_difference is not None:
        lines.append(f"(intervals: {result.differences[0].accepted_difference.method})")
    cheapest = result.cheapest_per_accepted
    said = cheapest or (f"a tie between {', '.join(result.cheapest_tied)}" if result.cheapest_tied
                        else "cannot tell (no priced route accepted anything)")
    lines.append(f"cheapest per accepted task: {said}"
                 + (f"; not priced: {', '.join(result.unpriced)}" if result.unpriced else ""))
    return lines


def print_comparison(result: Comparison) -> None:
    table = Table(title="routes side by side")
    table.add_column("metric")
    for route in result.routes:
        table.add_column(route, overflow="fold")
    for label, read in ROWS:
        table.add_row(label, *(read(m) for m in result.routes.values()))
    out.print(table)
    for line in difference_lines(result):
        out.print(line, markup=False, highlight=False, style="dim" if line.startswith("(intervals") else None)
