"""Running model-written code: isolation backends (bubblewrap), runtimes, verdicts on test runs, preflight."""
