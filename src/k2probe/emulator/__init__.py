"""The Kimi API emulator: contract enforcement, Moonshot-shaped streams, faults and gateway personalities.

Its settings are light to import; the server (Starlette, uvicorn) is loaded only when asked for."""

from typing import Any

from k2probe.emulator.settings import FAULT_KINDS, PERSONALITIES, EmulatorSettings, parse_faults

__all__ = ["FAULT_KINDS", "PERSONALITIES", "EmulatorServer", "EmulatorSettings", "create_app", "parse_faults",
           "serve_forever"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from k2probe.emulator.app import create_app

        return create_app
    if name in ("EmulatorServer", "serve_forever"):
        from k2probe.emulator import server

        return getattr(server, name)
    raise AttributeError(name)
