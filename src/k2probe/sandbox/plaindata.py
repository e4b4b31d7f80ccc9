"""Plain data across a pipe: exact builtin values (None, bool, int, float, complex, str, bytes, list, tuple, dict, set,
frozenset) as tagged JSON, nothing else. `type(x) is ...`, never isinstance: a subclass, an object whose `__eq__`
always answers True, a generator — anything that could run code on the receiving side — is refused.

Standard library only, and only built-in modules on the candidate's side (importing `json` would cost every sandbox
more than the rest of its start): the candidate's server (sandbox/callee.py) carries this file's source into its
sandbox, reads the checker's messages with `marshal` (they come from k2probe) and writes its own as JSON lines with
`json_line`; the checker reads those with `json` and `from_node`, never with anything that could run code."""

import _json
import binascii

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
        return ["B", binascii.b2a_base64(value, newline=False).decode("ascii")]  # type: ignore[arg-type]
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
        return binascii.a2b_base64(rest[0], strict_mode=True)
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
    except (ValueError, RecursionError, binascii.Error) as exc:  # bad base64, nesting past the interpreter's limit
        raise NotPlainData(f"not plain data: {type(exc).__name__}") from None


def read_message(line: bytes) -> dict[str, object]:
    """One message from the candidate (checker side): a JSON object on one line, within MAX_BYTES, no bare NaN."""
    import json

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


def _text(node: object, out: list[str]) -> None:
    if node is None:
        out.append("null")
    elif node is True or node is False:
        out.append("true" if node else "false")
    elif type(node) is int:
        out.append(int.__repr__(node))
    elif type(node) is float:
        out.append(float.__repr__(node))  # finite: to_node tags the others
    elif type(node) is str:
        out.append(_json.encode_basestring_ascii(node))
    elif type(node) is list:
        out.append("[")
        for index, item in enumerate(node):
            if index:
                out.append(",")
            _text(item, out)
        out.append("]")
    elif type(node) is dict:
        out.append("{")
        for index, (key, item) in enumerate(node.items()):
            out.append("," if index else "")
            out.append(_json.encode_basestring_ascii(str(key)) + ":")
            _text(item, out)
        out.append("}")
    else:
        raise NotPlainData(f"a {type(node).__name__} in a message")


def json_line(message: dict[str, object]) -> bytes:
    """A message of `to_node` forms and strings as one line of JSON, written without the `json` module."""
    out: list[str] = []
    _text(message, out)
    return "".join(out).encode("ascii") + b"\n"


def frame(message: dict[str, object]) -> bytes:
    """A message to the candidate (from k2probe, so `marshal` may read it there): its length, then its bytes."""
    import marshal

    data = marshal.dumps(message)
    return len(data).to_bytes(4, "big") + data


def _no_constant(name: str) -> object:
    raise NotPlainData(f"bare {name} in a message")
