"""Shared files in K2PROBE_HOME (`preflight.json`, `uploads.json`) updated by many processes at once lose nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

WRITERS = 8
KEYS_EACH = 25


def _many_processes(script: str, home: Path) -> None:
    """Start WRITERS processes running `script` (which sees WRITER, KEYS_EACH and HOME) together; all must succeed."""
    processes = [subprocess.Popen([sys.executable, "-c", f"WRITER = {n}\nKEYS_EACH = {KEYS_EACH}\n"
                                   f"HOME = {str(home)!r}\n" + textwrap.dedent(script)],
                                  stderr=subprocess.PIPE, text=True) for n in range(WRITERS)]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err


def test_processes_adding_keys_at_once_all_stay(tmp_path):
    """Each update holds the file open between its read and its write (as a preflight's seconds did): without the
    lock, most keys would be lost."""
    _many_processes("""
        import time
        from pathlib import Path
        from k2probe.core.sharedfile import update_json
        def add(now, key):
            time.sleep(0.002)  # widen the window between read and write
            return sorted(set(now) | {key})
        for i in range(KEYS_EACH):
            update_json(Path(HOME) / "shared.json", lambda now: add(now, f"{WRITER}-{i}"), [])
    """, tmp_path)
    kept = json.loads((tmp_path / "shared.json").read_text())
    assert len(kept) == WRITERS * KEYS_EACH == len(set(kept))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.json", "shared.json.lock"]  # no temporary left


def test_uploads_cached_by_many_processes_are_all_remembered(tmp_path):
    _many_processes("""
        from pathlib import Path
        from k2probe.client.uploads import UploadCache
        for i in range(KEYS_EACH):
            cache = UploadCache(Path(HOME) / "uploads.json")  # each upload reads the cache first, as deliver() does
            cache.remember(f"route|url|{WRITER}-{i}", {"file_id": f"file-{WRITER}-{i}", "bytes": 1})
    """, tmp_path)
    entries = json.loads((tmp_path / "uploads.json").read_text())
    assert len(entries) == WRITERS * KEYS_EACH
    assert entries["route|url|3-7"]["file_id"] == "file-3-7"


def test_a_damaged_shared_file_is_replaced_whole(tmp_path):
    from k2probe.core.sharedfile import read_json, update_json

    path = tmp_path / "preflight.json"
    path.write_text("[1, 2")
    assert read_json(path, []) == []
    assert update_json(path, lambda now: [*now, "a"], []) == ["a"]
    assert json.loads(path.read_text()) == ["a"]


def test_a_lock_held_too_long_is_said_not_waited_for(tmp_path):
    import fcntl
    import os

    from k2probe.core.sharedfile import SharedFileBusy, update_json

    path = tmp_path / "uploads.json"
    fd = os.open(tmp_path / "uploads.json.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(SharedFileBusy):
            update_json(path, lambda now: now, {}, wait_s=0.3)
    finally:
        os.close(fd)
    assert not path.exists()


@pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="the preflight runs in the sandbox")
def test_concurrent_preflights_remember_every_proven_task(workdir):
    """The attack: preflights running side by side each read preflight.json before their seconds of work and wrote it
    after, so only the last one was remembered. Now every proven task is, and none is proven again."""
    from k2probe.sandbox.isolation import isolation
    from k2probe.sandbox.preflight import preflight_failure
    from k2probe.sandbox.runtime import Runtime
    from k2probe.tasks.shipped import load_suite

    tasks = load_suite("basic")[:4]
    iso, runtime = isolation("auto"), Runtime.own()
    with ThreadPoolExecutor(len(tasks)) as pool:
        failures = list(pool.map(lambda task: preflight_failure(task, iso, runtime), tasks))
    assert failures == [None] * len(tasks)
    assert len(json.loads((workdir / "home" / "preflight.json").read_text())) == len(tasks)
