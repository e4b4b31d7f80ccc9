"""The command line, thin: options in, one activity called, its result printed. Commands import what they use."""

from k2probe.cli.main import main

__all__ = ["main"]
