"""Every request checked against the route's profile before it goes upstream: each finding names the offending field
by JSON pointer, says what Moonshot would answer (`would_400`: it would refuse the request) and how to fix it in the
framework's terms. The rules are core.contract's and the sanitiser's; what the proxy adds is its memory of what it
relayed (memory.py), which is what tells a dropped or altered reasoning from one never sent."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from k2probe.core import contract
from k2probe.core.mediatypes import IMAGE_TYPES, VIDEO_TYPES, fits, media_size
from k2probe.core.profiles import Profile
from k2probe.core.results import Model
from k2probe.proxy.memory import Memory, Relayed, tool_calls

Kind = Literal["fixed_parameter", "tool_choice", "thinking_disabled", "reasoning_dropped", "reasoning_altered",
               "tool_call_flattened", "tool_call_unanswered", "no_max_tokens", "media_over_limits", "doubled_v1"]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]


class Finding(Model):
    """One way a request breaks (or risks) the contract, where, what Moonshot would do, and the fix."""

    kind: Kind
    pointer: str  # RFC 6901 JSON pointer into the request body ("" for the request line itself)
    message: str
    fix: str
    would_400: bool  # Moonshot would refuse it (a 400; a 404 for a doubled /v1)
    evidence: str = ""
    repaired: bool = False  # repair mode changed the request to fix it (said in `evidence`)


def _pointer(*parts: object) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _refusal(check: Any, *args: Any) -> str | None:
    """Moonshot's message when the contract rule refuses, else None."""
    try:
        check(*args)
    except contract.ApiError as err:
        return err.message
    return None


FIX_FIXED = ("do not send {name}: remove it from the client's defaults (openai SDK: leave it out of create(); "
             "LangChain ChatOpenAI: {name}=None and no model_kwargs; LiteLLM: drop_params) — {model} fixes it at {value:g}")
FIX_REASONING = ("send the assistant message back as the model returned it, reasoning_content included (openai SDK: "
                 "append response.choices[0].message or its model_dump(), not a hand-built dict; LangChain: keep "
                 "additional_kwargs['reasoning_content'] or run this proxy with --mode repair)")


def check_request(body: dict[str, Any], profile: Profile, memory: Memory, *, session: str | None = None,
                  path: str = "/v1/chat/completions", body_bytes: int = 0) -> list[Finding]:
    """The findings of one chat request (empty: conformant) in conversation `session`."""
    found: list[Finding] = []
    if path.startswith("/v1/v1"):
        found.append(Finding(kind="doubled_v1", pointer="", message=f"the client calls {path}: its base URL repeats /v1",
                             fix="set the framework's base URL to http://HOST:PORT/v1 (the SDK appends "
                                 "/chat/completions itself)", would_400=True))
    found += _sampling(body, profile)
    found += _reasoning(body, profile, memory)
    found += _tool_calls(body, memory.by_session.get(session or "", []))
    found += _media(body, profile, body_bytes)
    return found


def _sampling(body: dict[str, Any], profile: Profile) -> list[Finding]:
    found: list[Finding] = []
    for name, value in profile.fixed.items():
        if (message := _refusal(contract.check_fixed_params, {name: body.get(name)}, {name: value})) is not None:
            found.append(Finding(kind="fixed_parameter", pointer=_pointer(name), message=message, would_400=True,
                                 fix=FIX_FIXED.format(name=name, model=profile.name, value=value),
                                 evidence=f"{name}={body.get(name)!r}"))
    if profile.thinking_forced and (message := _refusal(contract.check_thinking, body)) is not None:
        found.append(Finding(kind="thinking_disabled", pointer="/thinking", message=message, would_400=True,
                             fix=f"do not send thinking (or send {{\"type\": \"enabled\"}}): {profile.name} always "
                                 "thinks", evidence=f"thinking={body.get('thinking')!r}"))
    if profile.tool_choice_allowed is not None and (message := _refusal(contract.check_tool_choice, body)) is not None:
        found.append(Finding(kind="tool_choice", pointer="/tool_choice", message=message, would_400=True,
                             fix="send tool_choice 'auto' (or none) and let the model choose: a forced tool call is "
                                 "refused while thinking (LangChain: bind_tools(..., tool_choice=None); inspect_ai / "
                                 "agents: do not force the first tool)",
                             evidence=f"tool_choice={body.get('tool_choice')!r}"))
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        found.append(Finding(kind="no_max_tokens", pointer="/max_tokens", would_400=False,
                             message="no explicit max_tokens: the route's default output budget decides when an "
                                     "answer is cut",
                             fix=f"set a workflow budget (max_tokens / max_completion_tokens, at least "
                                 f"{profile.min_thinking_budget} for a thinking model)"))
    return found


def _reasoning(body: dict[str, Any], profile: Profile, memory: Memory) -> list[Finding]:
    found: list[Finding] = []
    messages = body.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") != "assistant" or not message.get("tool_calls"):
            continue
        relayed = memory.turn(message)
        where = _pointer("messages", index, "reasoning_content")
        if contract.lacks_reasoning(message):
            if not profile.reasoning_in_history and (relayed is None or not relayed.reasoning):
                continue
            had = (f"the proxy relayed {len(relayed.reasoning)} characters of reasoning for tool call "
                   f"{relayed.call_id!r}" if relayed and relayed.reasoning else "no record of this turn's reasoning "
                   "(made before the proxy started, or by another route)")
            found.append(Finding(kind="reasoning_dropped", pointer=where, would_400=profile.reasoning_in_history,
                                 message=contract.reasoning_missing(index).message, fix=FIX_REASONING, evidence=had))
            continue
        sent = message.get("reasoning_content")
        if not isinstance(sent, str):
            continue
        why = _altered(sent, message, relayed.reasoning if relayed else None)
        if why is not None:
            found.append(Finding(kind="reasoning_altered", pointer=where, would_400=False,
                                 message=f"reasoning_content at message {index} is {why}: the model loses the "
                                         "reasoning it made this tool call with (Moonshot accepts it: it checks "
                                         "presence, not content)",
                                 fix=FIX_REASONING + "; a gateway that fills in a placeholder (LiteLLM's \" \") "
                                     "hides a client that drops it", evidence=f"sent {sent[:80]!r}"))
    return found


def _altered(sent: str, message: dict[str, Any], relayed: str | None) -> str | None:
    """How the reasoning sent back differs from what was relayed (None: it is the same, or nothing says it changed)."""
    if relayed is not None and sent == relayed:
        return None
    if sent.strip() == "" and (relayed is None or relayed.strip() != ""):
        return "a placeholder"
    content = message.get("content")
    if isinstance(content, str) and content.strip() and sent == content:
        return "a copy of the message's content"
    if relayed is None:
        return None
    if relayed.startswith(sent):
        return f"truncated ({len(sent)} of {len(relayed)} characters)"
    return "not what the model returned"


def _tool_calls(body: dict[str, Any], relayed_calls: list[Relayed]) -> list[Finding]:
    found: list[Finding] = []
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)] if isinstance(body.get("messages"),
                                                                                           list) else []
    carried = {str(c.get("id")) for m in messages if m.get("role") == "assistant" for c in tool_calls(m)}
    answered = {str(m.get("tool_call_id")) for m in messages if m.get("role") == "tool"}
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        for k, call in enumerate(tool_calls(message)):
            call_id = str(call.get("id"))
            if call_id not in answered:
                found.append(Finding(kind="tool_call_unanswered", pointer=_pointer("messages", index, "tool_calls", k),
                                     would_400=False, evidence=f"tool_call_id {call_id!r}",
                                     message=f"tool call {call_id!r} of message {index} is answered by no tool message",
                                     fix="after an assistant tool-call turn, send one {role: tool, tool_call_id, "
                                         "content} per call before the next turn"))
    texts = [(i, m["content"]) for i, m in enumerate(messages) if isinstance(m.get("content"), str)
             and m.get("role") in ("user", "assistant", "system")]
    for relayed in relayed_calls:
        if relayed.call_id in carried or len(relayed.arguments) < 3:
            continue
        for index, text in texts:
            if relayed.call_id in text or relayed.arguments in text:
                found.append(Finding(kind="tool_call_flattened", pointer=_pointer("messages", index, "content"),
                                     would_400=False, evidence=f"tool call {relayed.call_id!r} ({relayed.name})",
                                     message=f"the model's tool call {relayed.name} ({relayed.call_id!r}) comes back "
                                             f"as text in message {index}, not as a tool_calls turn",
                                     fix="keep tool calls as assistant tool_calls with tool messages answering them "
                                         "(a framework's 'flatten history' or text-only memory loses them)"))
                break
    return found


def _media(body: dict[str, Any], profile: Profile, body_bytes: int) -> list[Finding]:
    found: list[Finding] = []
    limit = profile.media.body_max_bytes
    if body_bytes > limit:
        found.append(Finding(kind="media_over_limits", pointer="", would_400=True,
                             message=f"the request body is {body_bytes} bytes, over the {limit} Moonshot accepts",
                             fix="upload large or reused media with POST /files and send ms://<file_id>"))
    messages = body.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for k, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("image_url", "video_url"):
                continue
            url = str((part.get(kind) or {}).get("url") or "")
            where = _pointer("messages", index, "content", k, kind, "url")
            allowed = IMAGE_TYPES if kind == "image_url" else VIDEO_TYPES
            mime = url[5:].split(";", 1)[0].split(",", 1)[0] if url.startswith("data:") else None
            if url.startswith(("http://", "https://")):
                found.append(Finding(kind="media_over_limits", pointer=where, would_400=True,
                                     message="a public http(s) URL: Moonshot accepts only data URLs and ms://<file_id>",
                                     fix="send the bytes as a base64 data URL, or upload with POST /files"))
            elif mime is not None and mime not in allowed:
                found.append(Finding(kind="media_over_limits", pointer=where, would_400=True,
                                     message=f"Invalid request: unsupported {kind[:5]} format: {mime}",
                                     fix=f"send one of: {', '.join(t.split('/')[1] for t in allowed)}"))
            elif mime is not None and (over := _over_resolution(url, mime, kind, profile)) is not None:
                found.append(Finding(kind="media_over_limits", pointer=where, would_400=True, message=over,
                                     fix="scale it down before sending (k2probe chat --image/--video … --fit does; "
                                         "Pillow: Image.thumbnail((4096, 2160)); ffmpeg: -vf scale=1920:-2)"))
    return found


def _over_resolution(url: str, mime: str, kind: str, profile: Profile) -> str | None:
    """Moonshot's words for an image or video over the profile's resolution limit (either orientation), read from
    the data URL's header; None when it fits or the header does not say."""
    try:
        data = base64.b64decode(url.partition(",")[2], validate=True)
    except (binascii.Error, ValueError):
        return None
    size = media_size(data, mime)
    limit = profile.media.image_max if kind == "image_url" else profile.media.video_max
    if size is None or fits(*size, limit):
        return None
    return (f"Invalid request: {kind[:5]} resolution {size[0]}x{size[1]} exceeds the limit {limit[0]}x{limit[1]}")
