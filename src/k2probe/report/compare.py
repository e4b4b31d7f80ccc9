"""The terminal view of `compare`: the routes' metrics side by side, each paired difference in a line, the causes of
the worse route's non-passes, and the cheapest route per accepted task."""

from __future__ import annotations

from rich.table import Table

from k2probe.eval.compare import Comparison
from k2probe.report.evaluation import ROWS
from k2probe.report.terminal import out


def print_comparison(result: Comparison) -> None:
    table = Table(title="routes side by side")
    table.add_column("metric")
    for route in result.routes:
        table.add_column(route, overflow="fold")
    for label, read in ROWS:
        table.add_row(label, *(read(m) for m in result.routes.values()))
    out.print(table)
    for diff in result.differences:
        acc = diff.accepted_difference
        if acc is not None:
            out.print(f"{diff.route} vs {diff.against}: accepted {100 * acc.value:+.1f} points "
                      f"[{100 * acc.ci95[0]:+.1f}, {100 * acc.ci95[1]:+.1f}] on {diff.judged_pairs} "
                      f"paired samples (McNemar p={acc.mcnemar_p:.3g}); errors {diff.error_difference:+d}")
        else:
            out.print(f"{diff.route} vs {diff.against}: no paired judged samples; errors {diff.error_difference:+d}")
        trigger = diff.tool_trigger_vs_reference
        if trigger and trigger.get("f1") is not None:
            out.print(f"    tool-call trigger against {diff.against}'s decisions: F1 {trigger['f1']:.3f} "
                      f"(n={trigger['n']})")
        for cause in diff.causes:
            out.print(f"    {cause.samples} sample(s) passed on {diff.against} but not here: {cause.reason}",
                      markup=False)
    cheapest = result.cheapest_per_accepted
    out.print(f"cheapest per accepted task: {cheapest or 'cannot tell (no priced route accepted anything)'}"
              + (f"; not priced: {', '.join(result.unpriced)}" if result.unpriced else ""))
