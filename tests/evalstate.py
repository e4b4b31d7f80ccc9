"""What an eval run's store holds, read straight from its SQLite file: the run's id and, per sample, its outcome and
the calls made for it (how tests see that a sample was sent once, twice or never)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def eval_state(workdir: Path) -> tuple[str | None, dict[str, tuple[str, int]]]:
    """The eval run's id, and per sample id: (outcome, calls made for it); nothing while the store is not there yet."""
    path = workdir / "home" / "k2probe.db"
    if not path.exists():
        return None, {}
    try:
        with sqlite3.connect(path) as db:
            run = db.execute("select id from runs where command = 'eval'").fetchone()
            rows = db.execute("select s.id, s.outcome, (select count(*) from calls c where c.sample_id = s.id) "
                              "from samples s").fetchall()
    except sqlite3.OperationalError:
        return None, {}
    return (run[0] if run else None), {r[0]: (r[1], r[2]) for r in rows}
