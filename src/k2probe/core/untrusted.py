"""Text a model or a gateway controls, made safe for the medium it is shown in: one function per medium (terminal,
JSON, HTML, XML, and the string literals and comments of a snippet). Here in core, the bottom layer, because every
layer that writes such text (report, cli, diagnose's snippets) must be able to use the same functions.

Control characters are never dropped silently: each is shown as a visible stand-in (␛ for ESC, ␇ for BEL, the
`\\x9b` / `\\u202e` notation where Unicode has no picture), so what the model sent stays readable and nothing it sent
can move the cursor, recolour, retitle or hyperlink the terminal, reorder text (bidi controls), or break a file."""

from __future__ import annotations

import html as _html
import json
import re
import shlex

# C0 controls (but \t \n), DEL, C1 controls, bidi embeddings/overrides/isolates, lone surrogates, U+FFFE/U+FFFF.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
                     "\ufffe\uffff]")
_UNSAFE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                          "\ud800-\udfff\ufffe\uffff]")  # the same plus tab, newline, and U+2028/9 (JavaScript's)
_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")


def _stand_in(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟ (Unicode's control pictures)
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def storable(text: str) -> str:
    """`text` as valid UTF-8, which every store, file and terminal takes: a lone surrogate (from a model's output, a
    server's words, bytes decoded with surrogateescape) becomes its `\\udXXX` escape."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def visible(text: str) -> str:
    """`text` with every control character but tab and newline replaced by a visible stand-in."""
    return _UNSAFE.sub(_stand_in, text) if _UNSAFE.search(text) else text


def one_line(text: str) -> str:
    """`text` as one line of printable characters (tab and newline shown as ␉ and ␊ too)."""
    return _UNSAFE_LINE.sub(_stand_in, text)


def terminal(text: str) -> str:
    """For a terminal: CRLF becomes a newline, every other control character (ESC, CSI, OSC, BEL, backspace, a bare
    carriage return, bidi overrides) a visible stand-in. Rich markup is not this function's concern: the consoles in
    report/terminal.py never parse markup."""
    if not _UNSAFE.search(text):
        return text
    return visible(text.replace("\r\n", "\n"))


def json_document(text: str) -> str:
    """A JSON document (json.dumps with ensure_ascii=False) with the characters json leaves raw but a terminal or an
    editor acts on (DEL, C1, bidi controls) and lone surrogates (which cannot be written as UTF-8) escaped as \\uXXXX.
    Such characters only occur inside JSON strings, where the escape means the same character."""
    return _IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _IN_JSON.search(text) else text


def xml(text: str) -> str:
    """For XML 1.0 text or an attribute: characters XML forbids (most C0, lone surrogates, U+FFFE/U+FFFF) and the
    ones it discourages (DEL, C1) become visible stand-ins; escaping <, & and quotes is the XML writer's job."""
    return visible(text.replace("\r\n", "\n"))


def html_text(text: str) -> str:
    """For HTML before escaping (jinja2's `finalize`, whose output autoescape then escapes)."""
    return visible(text.replace("\r\n", "\n"))


def html(text: str) -> str:
    """For hand-built HTML or SVG, text or attribute value: control characters visible, then <, >, &, quotes escaped."""
    return _html.escape(html_text(text), quote=True)


# ---- snippets: a value inside code the user will run -----------------------------------------------------------------
def shell_word(text: str) -> str:
    """One POSIX shell word that expands to `text` and nothing else (single-quoted)."""
    return shlex.quote(text)


def python_str(text: str) -> str:
    """A Python string literal of `text` (every control and non-printable character escaped)."""
    return repr(text)


def js_str(text: str) -> str:
    """A JavaScript string literal of `text` (ASCII only: U+2028 and friends escaped too)."""
    return json.dumps(text, ensure_ascii=True)


def comment(text: str) -> str:
    """`text` for a one-line comment (shell `#`, Python `#`, JavaScript `//`): no line break can end the comment,
    no control character reaches the file."""
    return one_line(text.replace("\r\n", "\n"))
