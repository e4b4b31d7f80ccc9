"""Untrusted answers checked at the edge: a chat completion, or one chunk of a stream, parsed and validated with typed
models (as the emulator checks requests) before anything uses it. What cannot be used is a `malformed_response`
Failure of the route that carries the server's words (truncated, made safe), never an exception further in."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from k2probe.core.failures import Failure, from_body
from k2probe.core.records import Usage, token_count

MAX_DEPTH = 64  # an answer nests a handful of levels; deeper is an attack on every recursive reader after us
MAX_COST_USD = 10_000.0  # a gateway's usage.cost for one request past this is not a price
MAX_TOOL_CALLS = 1_000  # a streamed tool call's `index` past this is not a position


class Malformed(ValueError):
    """The answer cannot be used; the message says why, in the server's words."""


class NotJson(Malformed):
    """Not JSON at all (an HTML page, a proxy's text): named as such, as a wrong base URL usually is."""


def _count(value: Any) -> Any:
    """A usage figure by the one rule for token counts (core.records.token_count); null stays null."""
    return value if value is None else token_count(value)


Count = Annotated[int, BeforeValidator(_count)]


class _Open(BaseModel):
    """Fields the contract does not name pass through; the named ones must have their type."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class PromptDetails(_Open):
    cached_tokens: Count | None = None


class CompletionDetails(_Open):
    reasoning_tokens: Count | None = None


class UsageFigures(_Open):
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    total_tokens: Count | None = None
    cached_tokens: Count | None = None  # Moonshot's place for it
    prompt_tokens_details: PromptDetails | None = None
    completion_tokens_details: CompletionDetails | None = None
    cost: Annotated[StrictFloat | StrictInt, Field(ge=0, le=MAX_COST_USD)] | None = None  # OpenRouter's

    def usage(self) -> Usage:
        prompt, completion = self.prompt_tokens or 0, self.completion_tokens or 0
        cached = self.cached_tokens or (self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details
                                        else None) or 0
        reasoning = (self.completion_tokens_details.reasoning_tokens if self.completion_tokens_details else None) or 0
        return Usage(prompt, completion, reasoning, cached, self.total_tokens or prompt + completion,
                     float(self.cost) if self.cost is not None else None)


class Function(_Open):
    name: StrictStr | None = None
    arguments: StrictStr | None = None


class ToolCall(_Open):
    id: StrictStr | None = None
    type: StrictStr | None = None
    function: Function


class _Said(_Open):
    """What an assistant turn (or a stream's delta of one) carries besides its tool calls."""

    role: StrictStr | None = None
    content: StrictStr | None = None
    reasoning_content: StrictStr | None = None
    reasoning: StrictStr | None = None


class Message(_Said):
    tool_calls: list[ToolCall] | None = None


class Choice(_Open):
    message: Message
    finish_reason: StrictStr | None = None
    usage: UsageFigures | None = None


class Completion(_Open):
    choices: Annotated[list[Choice], Field(min_length=1)]
    usage: UsageFigures | None = None


class DeltaCall(_Open):
    index: Annotated[StrictInt, Field(ge=0, le=MAX_TOOL_CALLS)] | None = None
    id: StrictStr | None = None
    type: StrictStr | None = None
    function: Function | None = None


class Delta(_Said):
    tool_calls: list[DeltaCall] | None = None


class ChunkChoice(_Open):
    delta: Delta | None = None
    finish_reason: StrictStr | None = None
    usage: UsageFigures | None = None


class Chunk(_Open):
    choices: list[ChunkChoice] | None = None
    usage: UsageFigures | None = None


def _no_constant(name: str) -> Any:
    raise Malformed(f"{name} is not a JSON number")


def _check_tree(value: Any) -> None:
    """Depth within MAX_DEPTH and every string (keys too) valid Unicode, without recursion (a deep tree is the
    attack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise Malformed(f"nested more than {MAX_DEPTH} levels deep")
            for key, child in (item.items() if isinstance(item, dict) else enumerate(item)):
                if isinstance(key, str):
                    _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise Malformed(f"a string holds a lone UTF-16 surrogate ({text[exc.start]!r}): not text") from None


def load(text: str) -> Any:
    """Parse untrusted JSON: NaN, Infinity, numbers past the parser's digit limit, nesting past MAX_DEPTH and lone
    surrogates are refused with the reason (Malformed), never raised as something else."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise Malformed(f"nested more than {MAX_DEPTH} levels deep") from None
    except Malformed:
        raise
    except json.JSONDecodeError as exc:
        raise NotJson(f"not JSON: {exc.msg}") from None
    except ValueError as exc:  # int() past sys.get_int_max_str_digits()
        raise Malformed(str(exc).splitlines()[0][:120]) from None
    _check_tree(value)
    return value


def _where(exc: ValidationError) -> str:
    """The first problem pydantic found, as `choices.0.message.content: Input should be a valid string (got 123)`."""
    error = exc.errors(include_url=False)[0]
    place = ".".join(str(part) for part in error["loc"]) or "the document"
    return f"{place}: {error['msg']} (got {json.dumps(error.get('input'), default=repr)[:80]})"


def _malformed(status: int | None, what: str, reason: str, text: str | None, *, mid_stream: bool = False) -> Failure:
    """The Failure, with the server's own words: the offending value (in `reason`), or how the body began."""
    began = "" if text is None else f"; it began {' '.join(text[:400].split())[:120]!r}"
    return Failure(status, "malformed_response", f"{what} cannot be used: {reason}{began}", mid_stream=mid_stream)


def completion(status: int, text: str, content_type: str) -> Failure | tuple[dict[str, Any], Usage | None]:
    """A 2xx chat completion body: (the document, its usage if any) once valid; an error envelope's Failure, or a
    `malformed_response` one saying what is wrong and where."""
    try:
        data = load(text)
    except NotJson:
        found = from_body(status, text, content_type)  # non_json_response, with what the body began with
        return found if isinstance(found, Failure) else _malformed(status, "the answer", "not JSON", text)
    except Malformed as exc:
        return _malformed(status, "the answer", str(exc), text)
    if not isinstance(data, dict):
        return _malformed(status, "the answer", f"a JSON {type(data).__name__}, not an object", text)
    if "error" in data and "choices" not in data:
        envelope = from_body(status, text, content_type)
        if isinstance(envelope, Failure):
            return envelope
    try:
        model = Completion.model_validate(data)
    except ValidationError as exc:
        return _malformed(status, "the answer", _where(exc), None)
    figures = model.usage or model.choices[0].usage
    return data, figures.usage() if figures is not None else None


def chunk(data: str, status: int | None) -> Failure | dict[str, Any]:
    """One SSE `data:` payload: the chunk once valid (an error event included: the caller names it), else a
    mid-stream `malformed_response`."""
    try:
        value = load(data)
    except Malformed as exc:
        return _malformed(status, "a chunk of the stream", str(exc), data, mid_stream=True)
    if not isinstance(value, dict):
        return _malformed(status, "a chunk of the stream", f"a JSON {type(value).__name__}, not an object", data,
                          mid_stream=True)
    if value.get("error") and not value.get("choices"):
        return value
    try:
        Chunk.model_validate(value)
    except ValidationError as exc:
        return _malformed(status, "a chunk of the stream", _where(exc), None, mid_stream=True)
    return value


def usage_of(figures: Any) -> Usage:
    """Usage from an already-validated chunk's `usage` (the accumulator keeps the raw dict)."""
    return UsageFigures.model_validate(figures).usage() if isinstance(figures, dict) else Usage()
