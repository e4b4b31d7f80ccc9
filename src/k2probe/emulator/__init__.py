"""The Kimi API emulator: contract enforcement, Moonshot-shaped streams, faults and gateway personalities."""

from .app import create_app
from .server import EmulatorServer, serve_forever
from .settings import FAULT_KINDS, PERSONALITIES, EmulatorSettings, parse_faults

__all__ = ["FAULT_KINDS", "PERSONALITIES", "EmulatorServer", "EmulatorSettings", "create_app", "parse_faults",
           "serve_forever"]
