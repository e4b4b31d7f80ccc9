"""`python -m k2probe`: the same as the `k2probe` command."""

from .cli import main

main()
