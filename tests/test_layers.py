"""No layer imports one above it, and only cli/ and report/ print. Every module under src/k2probe is parsed (ast) and
every import counts: at module level, inside functions (a lazy import is still a dependency) and under TYPE_CHECKING
(a type is a dependency too)."""

from __future__ import annotations

import ast
from pathlib import Path

import k2probe

SRC = Path(k2probe.__file__).resolve().parent

# Low → high. A folder is a layer; the top-level modules sit where their imports put them:
# contexts.py (route and run contexts) uses core, client and recording, and every activity uses it;
# api.py calls every activity and serves the emulator, and only cli calls it;
# k2probe/__init__.py and __main__.py are the package's public face, above everything.
LAYERS = ["core", "client", "recording", "contexts", "sandbox", "tasks", "agent", "eval", "load", "diagnose", "proxy",
          "report", "view", "emulator", "api", "cli", "__init__", "__main__"]

# What still points up, each for a reason; an entry that no longer occurs fails the test too, so this list only shrinks.
ALLOWED = {
    # the emulator package is callable as `k2probe.emulator(...)`, which is api.emulator: importing the subpackage
    # k2probe.emulator replaces the package attribute of that name, so the module itself must be the public callable
    # (a shim that imports api only when called, from outside the package)
    ("k2probe.emulator", "k2probe.api"),
}


PRINTERS = {"cli", "report"}  # the layers that write to the terminal; every other one returns results
PRINTING_ALLOWED: set[str] = set()


def _sources() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if "suites" not in p.relative_to(SRC).parts]  # not task repos


def _module(path: Path) -> str:
    parts = ["k2probe", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _imports(path: Path, module: str) -> list[tuple[str, int, str]]:
    """Every k2probe module `path` imports, anywhere in it: (imported, line, the names taken from it)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append((target, node.lineno, ",".join(alias.name for alias in node.names)))
    return [(target, line, names) for target, line, names in found if target.split(".")[0] == "k2probe"]


def _upward() -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every import of a higher layer."""
    offenders = []
    for path in _sources():
        module = _module(path)
        low = LAYERS.index(_layer(module))
        for target, line, names in _imports(path, module):
            # `from k2probe import __version__`: a constant of the root module, which imports nothing when run
            if target == "k2probe" and names == "__version__":
                continue
            if LAYERS.index(_layer(target)) > low:
                offenders.append((module, target, line))
    return offenders


def test_every_module_belongs_to_a_layer():
    unknown = sorted({_layer(_module(p)) for p in _sources()} - set(LAYERS))
    assert not unknown, f"modules in no layer (add them to LAYERS where their imports put them): {unknown}"


def test_no_layer_imports_one_above_it():
    found = _upward()
    offenders = [f"{importer} (line {line}) imports {imported}" for importer, imported, line in found
                 if (importer, imported) not in ALLOWED]
    assert not offenders, "imports of a higher layer:\n" + "\n".join(offenders)
    stale = ALLOWED - {(importer, imported) for importer, imported, _ in found}
    assert not stale, f"allowed but no longer imported (remove from ALLOWED): {sorted(stale)}"


def test_the_check_sees_imports_inside_functions_and_type_checking(tmp_path):
    """The parser counts a lazy import and a TYPE_CHECKING one: a module hiding its upward import there is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from k2probe.report import terminal\n"
                      "def f():\n    from k2probe.emulator.server import EmulatorServer\n    from . import sibling\n")
    targets = {target for target, _, _ in _imports(sample, "k2probe.core.sample")}
    assert targets == {"k2probe.report", "k2probe.emulator.server", "k2probe.core"}


def _prints(path: Path) -> list[tuple[int, str]]:
    """Where a module writes to the terminal: print(), sys.stdout/sys.stderr writes, or rich imported at all."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print":
                found.append((node.lineno, "print()"))
            elif (isinstance(func, ast.Attribute) and func.attr == "write" and isinstance(func.value, ast.Attribute)
                  and func.value.attr in ("stdout", "stderr")):
                found.append((node.lineno, f"{func.value.attr}.write()"))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [(node.lineno, f"import {name}") for name in names if name.split(".")[0] == "rich"]
    return found


def test_only_cli_and_report_print():
    """Activities return results; the CLI and report/ render them (a library caller gets no output it did not ask
    for)."""
    offenders = []
    for path in _sources():
        module = _module(path)
        if _layer(module) in PRINTERS or module in PRINTING_ALLOWED:
            continue
        offenders += [f"{module} (line {line}): {what}" for line, what in _prints(path)]
    assert not offenders, "printing outside cli/ and report/:\n" + "\n".join(offenders)
