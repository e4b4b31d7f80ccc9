"""`python -m k2probe`: the same as the `k2probe` command."""

from k2probe.cli.main import main

main()
