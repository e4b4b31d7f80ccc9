"""Plain data across a pipe: exact builtin values (None, bool, int, float, complex, str, bytes, list, tuple, dict, set,
frozenset) as tagged JSON, nothing else. `type(x) is ...`, never isinstance: a subclass, an object whose `__eq__`
always answers True, a generator — anything that could run code on the receiving side — is refused.

Standard library only: the candidate's server (sandbox/callee.py) carries this file's source into its sandbox."""

import base64
import json

MAX_DEPTH = 64
MAX_ITEMS = 1_000_000  # values in one message, all levels together
MAX_BYTES = 16 * 1024 * 1024  # one encoded message


class NotPlainData(ValueError):
    """A value (or a message) that is not plain data within the limits."""


def _encode(value: object, depth: int, budget: list[int]) -> object:
    budget[0] -= 1
    if budget[0] < 0:
        raise NotPlainData(f"more than {MAX_ITEMS} values")
    if depth > MAX_DEPTH:
        raise NotPlainData(f"nested deeper than {MAX_DEPTH}")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        number: int = value  # type: ignore[assignment]
        return number if -(2**53) < number < 2**53 else ["I", format(number, "x")]  # hex: no int digit limit
    if kind is float:
        return value if value == value and value not in (float("inf"), float("-inf")) else ["R", repr(value)]
    if kind is complex:
        return ["C", _encode(value.real, depth + 1, budget), _encode(value.imag, depth + 1, budget)]  # type: ignore[attr-defined]
    if kind is bytes:
        return ["B", base64.b64encode(value).decode("ascii")]  # type: ignore[arg-type]
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        tag = {list: "L", tuple: "T", set: "S", frozenset: "F"}[kind]
        return [tag, *(_encode(item, depth + 1, budget) for item in value)]  # type: ignore[attr-defined]
    if kind is dict:
        flat: list[object] = ["D"]
        for key, item in value.items():  # type: ignore[attr-defined]
            flat.append(_encode(key, depth + 1, budget))
            flat.append(_encode(item, depth + 1, budget))
        return flat
    raise NotPlainData(f"a {kind.__module__}.{kind.__qualname__} is not plain data")


def to_node(value: object) -> object:
    """The JSON-ready form of `value`; NotPlainData when it is not plain data or is over the limits."""
    try:
        return _encode(value, 0, [MAX_ITEMS])
    except RecursionError:
        raise NotPlainData(f"nested deeper than {MAX_DEPTH}") from None


def _decode(node: object, depth: int) -> object:
    if depth > MAX_DEPTH:
        raise NotPlainData(f"nested deeper than {MAX_DEPTH}")
    kind = type(node)
    if node is None or kind is bool or kind is str or kind is int or kind is float:
        return node
    if kind is not list or not node or type(node[0]) is not str:  # type: ignore[index]
        raise NotPlainData("not a tagged value")
    tag, rest = node[0], node[1:]  # type: ignore[index]
    if tag == "I" and len(rest) == 1 and type(rest[0]) is str:
        return int(rest[0], 16)
    if tag == "R" and len(rest) == 1 and rest[0] in ("nan", "inf", "-inf"):
        return float(rest[0])
    if tag == "C" and len(rest) == 2:
        real, imag = _decode(rest[0], depth + 1), _decode(rest[1], depth + 1)
        if type(real) is float and type(imag) is float:
            return complex(real, imag)
    if tag == "B" and len(rest) == 1 and type(rest[0]) is str:
        return base64.b64decode(rest[0], validate=True)
    items = [_decode(item, depth + 1) for item in rest] if tag in ("L", "T", "S", "F", "D") else None
    try:
        if tag == "L":
            return items
        if tag == "T":
            return tuple(items or ())
        if tag == "S":
            return set(items or ())
        if tag == "F":
            return frozenset(items or ())
        if tag == "D" and len(rest) % 2 == 0:
            return dict(zip((items or [])[::2], (items or [])[1::2], strict=True))
    except TypeError as exc:  # an unhashable key or member
        raise NotPlainData(str(exc)) from None
    raise NotPlainData(f"not a tagged value: {tag!r}")


def from_node(node: object) -> object:
    """The value a `to_node` form (parsed from JSON) stands for; NotPlainData for anything else."""
    try:
        return _decode(node, 0)
    except NotPlainData:
        raise
    except (ValueError, RecursionError) as exc:  # bad base64, nesting past the interpreter's own limit
        raise NotPlainData(f"not plain data: {type(exc).__name__}") from None


def read_message(line: bytes) -> dict[str, object]:
    """One protocol message: a JSON object on one line, within MAX_BYTES, no bare NaN or Infinity."""
    if len(line) > MAX_BYTES:
        raise NotPlainData(f"a message of more than {MAX_BYTES} bytes")
    try:
        message = json.loads(line, parse_constant=_no_constant)
    except NotPlainData:
        raise
    except (ValueError, RecursionError) as exc:  # bad JSON, an int over the digit limit, too deep
        raise NotPlainData(f"not a message: {type(exc).__name__}") from None
    if type(message) is not dict:
        raise NotPlainData("not a message")
    return message


def write_message(message: dict[str, object]) -> bytes:
    """One protocol message as one line of JSON."""
    return json.dumps(message, allow_nan=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _no_constant(name: str) -> object:
    raise NotPlainData(f"bare {name} in a message")
