"""The Kimi API emulator: contract enforcement, Moonshot-shaped streams, faults and gateway personalities.

Its settings are light to import; the server (Starlette, uvicorn) is loaded only when asked for. The package is
also callable: `k2probe.emulator(**settings)` is `k2probe.api.emulator`, the context manager that serves it on loopback
(the package and the public function share the name `k2probe.emulator`: importing the package, as the CLI does,
would otherwise hide the function)."""

import sys
import types
from typing import TYPE_CHECKING, Any

from k2probe.emulator.settings import FAULT_KINDS, PERSONALITIES, EmulatorSettings, parse_faults

if TYPE_CHECKING:
    from k2probe.emulator.app import create_app
    from k2probe.emulator.server import EmulatorServer, serve_forever

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


class _CallablePackage(types.ModuleType):
    """This package, callable as `k2probe.api.emulator`."""

    def __call__(self, *args: Any, **settings: Any) -> Any:
        from k2probe.api import emulator

        return emulator(*args, **settings)


sys.modules[__name__].__class__ = _CallablePackage
