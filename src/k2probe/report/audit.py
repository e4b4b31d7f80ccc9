"""`k2probe audit` on the terminal."""

from __future__ import annotations

from k2probe.diagnose.audit import AuditResult
from k2probe.report import terminal as render


def print_audit(result: AuditResult) -> None:
    """The findings as a table (what to do beside each), then what the route did right, then the added latency."""
    from rich.table import Table

    table = Table(title=f"audit of route {result.route} (profile {result.profile}): {result.verdict}")
    for column in ("finding", "severity", "detail", "what to do"):
        table.add_column(column, overflow="fold")
    for finding in result.findings:
        table.add_row(finding.id, finding.severity, finding.detail, finding.fix)
    if not result.findings:
        table.add_row("–", "–", "no probe saw the route change the contract", "")
    render.out.print(table)
    for probe in result.probes:
        if probe.finding is None:
            render.out.print(f"  ✔ {probe.check}: {probe.ok_detail}", markup=False)
    if result.added_latency_ms:
        added = result.added_latency_ms
        render.out.print(f"added latency: {added['median_ms']:+.1f} ms median (route {added['route_median_ms']:.1f} ms, "
                         f"baseline {added['baseline_median_ms']:.1f} ms, n={added['n']})")
