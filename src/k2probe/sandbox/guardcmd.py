"""The line a task writes to have its hidden tests judged by k2probe's guarded pytest runner (sandbox/guarded.py).
Light to import: the tasks layer reads it when it loads a suite."""

HIDDEN_CMD = "k2probe-pytest hidden_tests"  # k2probe's guarded pytest runner on the hidden tests
LEGACY_HIDDEN_CMD = ("PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -p no:cacheprovider --noconftest -c /dev/null "
                     "--rootdir . hidden_tests")


def is_guarded(command: str | None) -> bool:
    """Does `command` name k2probe's guarded pytest runner on the hidden tests (today's line, or the one it replaced)?
    Any other command is the suite's own: judged by its exit status only."""
    return command is not None and " ".join(command.split()) in (HIDDEN_CMD, LEGACY_HIDDEN_CMD)
