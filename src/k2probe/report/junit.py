"""JUnit XML for CI systems: one testsuite per route, one testcase per sample; `failed` is a <failure> (the model's
work), `error` an <error> (the harness, the machine or the route) — kept apart as CI systems show them apart. Every
text and attribute passes `untrusted.xml`: a failure's output may hold any character a model printed, and the file
must stay well-formed XML 1.0 for the CI to read it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from k2probe.core.results import Outcome, Sample
from k2probe.core.untrusted import xml


def write_junit(path: Path, suite: str, samples: list[Sample]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(junit_xml(suite, samples))
    return path


def junit_xml(suite: str, samples: list[Sample]) -> bytes:
    """The document: one testsuite per route, one testcase per sample."""
    by_route: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_route[sample.route].append(sample)
    root = ET.Element("testsuites", name=xml(f"k2probe eval {suite}"))
    for route, group in sorted(by_route.items()):
        node = ET.SubElement(root, "testsuite", name=xml(f"{suite} @ {route}"), tests=str(len(group)),
                             failures=str(sum(s.outcome is Outcome.FAILED for s in group)),
                             errors=str(sum(s.outcome is Outcome.ERROR for s in group)),
                             skipped=str(sum(s.outcome is Outcome.PENDING for s in group)))
        for s in group:
            case = ET.SubElement(node, "testcase", classname=xml(f"{suite}.{route}"),
                                 name=xml(f"{s.task_id} epoch {s.epoch}"),
                                 time=f"{(s.usage.latency_ms or 0.0) / 1000.0:.3f}")
            reason = xml(str(s.reason or ""))
            proof = xml(s.verdict.proof if s.verdict is not None else "")
            if s.outcome is Outcome.FAILED:
                ET.SubElement(case, "failure", message=reason[:500]).text = proof[-4000:]
            elif s.outcome is Outcome.ERROR:
                ET.SubElement(case, "error", message=reason[:500]).text = proof[-4000:]
            elif s.outcome is Outcome.PENDING:
                ET.SubElement(case, "skipped", message="not run (the run was interrupted)")
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
