"""The few named exceptions that steer control flow, and the exit code each one maps to."""

from __future__ import annotations


class K2ProbeError(Exception):
    """Base class: a readable one-line message and the exit code the CLI should use."""

    exit_code = 2

    def __init__(self, message: str, *, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def line(self) -> str:
        """The one line shown to a user: what is wrong, then how to fix it."""
        return f"{self.message} — {self.fix}" if self.fix else self.message


class ConfigError(K2ProbeError):
    """The configuration (environment, k2probe.toml, route, option) is wrong: exit 2."""


class UsageError(K2ProbeError):
    """A command-line argument is wrong: exit 2."""


class RequestRefused(K2ProbeError):
    """The sanitiser in --strict mode refused a request before sending it: exit 2."""


class ProbeFailed(K2ProbeError):
    """The thing under test failed (the API answered an error, a check failed): exit 1."""

    exit_code = 1
