"""The shape of a chat request, as pydantic models mirroring the contract: a body of the wrong shape is Moonshot's JSON
400 before any rule runs, never a 500 or a broken stream. Fields the contract does not name pass through untouched."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from k2probe.emulator.contract import ApiError, bad_request

Number = StrictInt | StrictFloat


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class UrlRef(_Open):
    url: StrictStr


class ContentPart(_Open):
    type: Literal["text", "image_url", "video_url"]
    text: StrictStr | None = None
    image_url: UrlRef | None = None
    video_url: UrlRef | None = None


class FunctionCall(_Open):
    name: StrictStr
    arguments: StrictStr


class ToolCall(_Open):
    id: StrictStr | None = None
    type: StrictStr | None = None
    function: FunctionCall


class Message(_Open):
    role: StrictStr
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: StrictStr | None = None
    reasoning_content: StrictStr | None = None
    partial: StrictBool | None = None


class FunctionSpec(_Open):
    name: StrictStr
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: StrictStr
    function: FunctionSpec


class StreamOptions(_Open):
    include_usage: StrictBool | None = None


class ChatBody(_Open):
    model: StrictStr
    messages: Annotated[list[Message], Field(min_length=1)]
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    stop: Any = None  # its rules (count, length) are check_stop's
    thinking: Any = None  # its rules are check_thinking's
    temperature: Number | None = None
    top_p: Number | None = None
    n: StrictInt | None = None
    presence_penalty: Number | None = None
    frequency_penalty: Number | None = None
    seed: StrictInt | None = None


def check_shape(body: dict[str, Any]) -> None:
    """ApiError (400, invalid_request_error) naming the first field of the wrong shape."""
    try:
        ChatBody.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise bad_request(f"Invalid request: {where}: {err['msg']}") from exc
    except RecursionError as exc:
        raise bad_request("Invalid request: the body is nested too deeply") from exc


__all__ = ["ApiError", "ChatBody", "check_shape"]
