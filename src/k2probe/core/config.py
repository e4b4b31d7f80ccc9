"""Configuration: environment variables and an optional k2probe.toml become Routes; base URLs and keys are checked."""

from __future__ import annotations

import hashlib
import math
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from k2probe.core.envnames import BASE_URL_ENV, KEY_ENVS, MODEL_ENV, PROFILE_ENV
from k2probe.core.errors import ConfigError
from k2probe.core.personalities import PERSONALITIES
from k2probe.core.redact import remember

DEFAULT_MODEL = "kimi-k2.7-code"
EMULATOR_KEY = "sk-k2probe-emulator"
CONFIG_FILE = "k2probe.toml"


class PriceOverride(BaseModel):
    """A user's own price for a route, USD per million tokens."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    cache_hit_input: float | None = Field(default=None, ge=0, le=10_000)
    cache_miss_input: float = Field(ge=0, le=10_000)
    output: float = Field(ge=0, le=10_000)
    source: str = "k2probe.toml"


class RouteSpec(BaseModel):
    """One `[routes.NAME]` table of k2probe.toml. The key itself never appears here, only its variable's name."""

    model_config = ConfigDict(extra="forbid")
    base_url: str | None = None
    api_key_env: str | None = None
    model: str = DEFAULT_MODEL
    profile: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    price: PriceOverride | None = None
    emulator: bool = False  # serve this route from the built-in emulator
    personality: str = "moonshot"  # emulator personality when `emulator` is true
    fallback: list[str] = Field(default_factory=list)  # routes tried in turn when this one cannot answer

    @field_validator("personality")
    @classmethod
    def _known_personality(cls, value: str) -> str:
        if value not in PERSONALITIES:
            raise ValueError(f"unknown personality {value!r}{did_you_mean(value, PERSONALITIES)}; "
                             f"one of: {', '.join(PERSONALITIES)}")
        return value

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {name[:40]!r} is not a valid HTTP header name")
            if any(ord(c) < 32 or ord(c) > 126 for c in text):
                raise ValueError(f"header {name!r} has a non-ASCII or control character in its value")
        return value

    @field_validator("params")
    @classmethod
    def _sane_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, item in value.items():
            check_param(name, item)
        return value

    @field_validator("api_key_env")
    @classmethod
    def _a_name_not_a_key(cls, value: str | None) -> str | None:
        if value is not None and looks_like_a_key(value):
            remember(value)  # never echoed, whatever prints it next
            raise ValueError("api_key_env holds the variable's *name*; this looks like the key itself "
                             "(write e.g. api_key_env = \"WISGATE_API_KEY\" and export the key in that variable)")
        return value


class ConfigFile(BaseModel):
    """The whole k2probe.toml."""

    model_config = ConfigDict(extra="forbid")
    default_route: str | None = None
    routes: dict[str, RouteSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fallbacks_exist(self) -> ConfigFile:
        for name, spec in self.routes.items():
            for other in spec.fallback:
                if other == name:
                    raise ValueError(f"route {name!r} names itself as its fallback")
                if other not in self.routes:
                    raise ValueError(f"route {name!r} falls back to {other!r}, which is not a [routes.…] table"
                                     f"{did_you_mean(other, list(self.routes))}")
        return self


class Route(BaseModel):
    """A resolved route: where to send requests, with which key and model. `api_key` lives in memory only."""

    name: str
    base_url: str | None  # None until an emulator route is started
    api_key: SecretStr | None
    api_key_env: str | None
    model: str
    profile: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    price: PriceOverride | None = None
    emulated: bool = False
    personality: str = "moonshot"
    fallback: list[str] = Field(default_factory=list)

    def key(self) -> str:
        return self.api_key.get_secret_value() if self.api_key else ""

    def public(self) -> dict[str, Any]:
        """The route as it may be stored or printed: the key masked, the variable's name kept."""
        return {
            "name": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "profile": self.profile,
            "api_key": mask_key(self.key()) if self.api_key else None,
            "api_key_env": self.api_key_env,
            "headers": {k: ("***" if is_secret_header(k) else v) for k, v in self.headers.items()},
            "params": self.params,
            "emulated": self.emulated,
            "personality": self.personality if self.emulated else None,
        }


def is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in ("auth", "key", "token", "secret", "cookie"))


def mask_key(key: str) -> str:
    """Show just enough of a key to tell two apart: its last four characters."""
    if not key:
        return "(none)"
    return f"…{key[-4:]} ({len(key)} chars)" if len(key) >= 16 else f"*** ({len(key)} chars)"


@dataclass(frozen=True)
class Finding:
    """Something that looks wrong in a base URL or key: a diagnosis code, what is wrong, and the fix."""

    code: str
    message: str
    fix: str


MAX_URL = 2048


def url_problem(url: str) -> Finding | None:
    """Why a base URL cannot even be sent to (too long, control characters, not http(s), no host, a bad port); the
    message never quotes a long URL in full."""
    shown = url if len(url) <= 80 else url[:60] + f"… ({len(url)} characters)"
    fix = "write it in full, e.g. https://api.moonshot.ai/v1"
    if len(url) > MAX_URL:
        return Finding("bad_base_url", f"the base URL is {len(url)} characters long (over {MAX_URL})", fix)
    if any(ord(c) < 33 or ord(c) == 127 for c in url.strip()):
        return Finding("bad_base_url", f"the base URL {shown!r} contains whitespace or control characters", fix)
    try:
        parts = urlsplit(url.strip().strip("'\""))
        parts.port  # noqa: B018 (raises for a port out of range)
    except ValueError as exc:
        return Finding("bad_base_url", f"the base URL {shown!r} cannot be parsed: {exc}", fix)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Finding("bad_base_url", f"the base URL {shown!r} is not an http(s) URL with a host", fix)
    return None


def check_base_url(url: str) -> list[Finding]:
    """What looks wrong in a base URL. Never rewrites it: the caller decides."""
    found: list[Finding] = []
    stripped = url.strip().strip("'\"")
    if stripped != url:
        found.append(Finding("bad_base_url", "the base URL has spaces or quotes around it", "remove them"))
    parts = urlsplit(stripped)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        found.append(
            Finding("bad_base_url", f"the base URL {stripped!r} has no http(s) scheme or host",
                    "write it in full, e.g. https://api.moonshot.ai/v1")
        )
        return found
    path = parts.path
    if path.endswith("/") and path != "/":
        found.append(Finding("bad_base_url", "the base URL ends with '/'", f"use {stripped.rstrip('/')}"))
    if parts.query or parts.fragment:
        found.append(Finding("bad_base_url", "the base URL carries a query or fragment", "remove everything after '?'"))
    segments = [s for s in path.split("/") if s]
    if "chat" in segments or "completions" in segments:
        base = stripped.split("/chat/completions")[0].rstrip("/")
        found.append(
            Finding("bad_base_url", "the base URL includes the endpoint path /chat/completions",
                    f"the SDK appends it: use {base}")
        )
    if segments.count("v1") > 1:
        fixed = stripped.replace("/v1/v1", "/v1")
        found.append(Finding("doubled_v1", "the base URL repeats /v1", f"use {fixed}: do not append /v1 again"))
    elif "v1" not in segments and not any(s.startswith("v") and s[1:].isdigit() for s in segments):
        found.append(
            Finding("missing_v1", "the base URL has no /v1 version segment",
                    f"OpenAI-compatible routes usually end in /v1: try {stripped.rstrip('/')}/v1")
        )
    return found


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
RESERVED_PARAMS = ("model", "messages", "stream")  # k2probe sets these itself
KNOWN_PARAMS = ("temperature", "top_p", "n", "presence_penalty", "frequency_penalty", "max_tokens",
                "max_completion_tokens", "stop", "seed", "tools", "tool_choice", "response_format", "stream_options",
                "thinking", "user", "logprobs", "top_logprobs", "logit_bias", "parallel_tool_calls", "reasoning_effort",
                "prompt_cache_key", "safety_identifier", "metadata", "service_tier")
MAX_PARAM_DEPTH = 32


def did_you_mean(word: str, choices: Any) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _depth_and_finite(value: Any, depth: int = 0) -> int:
    if depth > MAX_PARAM_DEPTH:
        raise ValueError(f"nested more than {MAX_PARAM_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number (JSON has no NaN or infinity)")
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return max([depth, *(_depth_and_finite(v, depth + 1) for v in children)])


def check_param(name: str, value: Any) -> None:
    """ValueError for a request parameter no server should get: one k2probe sets itself, a likely misspelling of a
    known one, a value with NaN/infinity or nested absurdly deep."""
    if name in RESERVED_PARAMS:
        raise ValueError(f"{name!r} is set by k2probe itself, not by a parameter")
    if name not in KNOWN_PARAMS and (hint := did_you_mean(name, KNOWN_PARAMS)):
        raise ValueError(f"unknown parameter {name!r}{hint}")
    try:
        _depth_and_finite(value)
    except ValueError as exc:
        raise ValueError(f"parameter {name!r}: {exc}") from exc
    except RecursionError as exc:
        raise ValueError(f"parameter {name!r}: nested too deeply") from exc


def looks_like_a_key(name: str) -> bool:
    """An environment variable's name cannot hold '-', spaces or control characters; a mixed-case name with digits
    that long is a key, not a name."""
    if not _ENV_NAME.fullmatch(name) or name.lower().startswith(("sk_", "sk-")):
        return True
    return len(name) >= 24 and any(c.isdigit() for c in name) and any(c.islower() for c in name)


def key_problem(key: str) -> Finding | None:
    """Whitespace, control or non-ASCII characters anywhere in a key: no server accepts it, and httpx would quote it in
    its error."""
    if any(ord(c) > 126 for c in key):
        return Finding("invalid_key", "the API key contains non-ASCII characters (a copy-paste of the wrong text?); "
                       "it is not shown", "set it again from the provider's console")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in key):
        return Finding("invalid_key", "the API key contains whitespace or control characters (a trailing newline or "
                       "\\r from a file or a copy-paste?); it is not shown",
                       "set it again without them, e.g. export NAME=\"$(printf %s \"$NAME\" | tr -d '[:space:]')\"")
    return None


def check_key(key: str) -> list[Finding]:
    """What looks wrong in a key's text (never its value: nothing here quotes the key)."""
    found: list[Finding] = []
    if key.strip().lower().startswith("bearer "):  # said first, and the rest checked without it: its space is no typo
        found.append(Finding("invalid_key", "the API key starts with 'Bearer '",
                             "remove the `Bearer ` prefix: set only the key (the SDK adds that prefix itself)"))
        key = key.strip()[len("bearer "):]
    problem = key_problem(key)
    if problem is not None and key == key.strip():
        found.append(problem)
    if key != key.strip() or key.strip() != key.strip().strip("'\""):
        found.append(Finding("invalid_key", "the API key has spaces or quotes around it", "remove them"))
    return found


def home() -> Path:
    """K2PROBE_HOME: where the database and saved records live (a folder, or a path where one can be made)."""
    path = Path(os.environ.get("K2PROBE_HOME", ".k2probe"))
    if path.exists() and not path.is_dir():
        raise ConfigError(f"K2PROBE_HOME={path} is not a folder", fix="point K2PROBE_HOME at a folder (or a new path)")
    return path


def known_good_path(route: str) -> Path:
    """Where smoke saves a route's known-good record as JSON (the store keeps it too). A name too long for a file
    name is cut and a hash of the whole name added, so two long names never share a file."""
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in route).lstrip(".") or "_"
    if len(safe) > 100 or safe != route:
        safe = f"{safe[:100]}-{hashlib.sha256(route.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"
    return home() / "known-good" / f"{safe}.json"


def load_file(path: Path | None = None) -> ConfigFile:
    """Read k2probe.toml (or return an empty config when there is none); malformed files are a ConfigError."""
    path = path or Path(os.environ.get("K2PROBE_CONFIG", CONFIG_FILE))
    if not path.exists():
        return ConfigFile()
    from k2probe.core.files import read_text

    text = read_text(path, "the config file", limit=16 * 1024 * 1024, error=ConfigError)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", fix="fix the syntax or move the file away") from exc
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            fields = {*ConfigFile.model_fields, *RouteSpec.model_fields, *PriceOverride.model_fields}
            message = f"unknown key{did_you_mean(str(err['loc'][-1]), fields)}"
        raise ConfigError(f"{path}: {where}: {message}", fix="see README.md, section Configuration") from exc


def _env_key() -> tuple[str | None, str | None]:
    for name in KEY_ENVS:
        value = os.environ.get(name)
        if value:
            remember(value)
            return value, name
    return None, None


def _env_route() -> Route:
    key, key_env = _env_key()
    base = os.environ.get(BASE_URL_ENV) or None
    model = os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    profile = os.environ.get(PROFILE_ENV) or None
    if key is None and base is None:
        return Route(name="emulator", base_url=None, api_key=SecretStr(EMULATOR_KEY), api_key_env=None,
                     model=model, emulated=True, profile=profile)
    return Route(name="env", base_url=base or "https://api.moonshot.ai/v1",
                 api_key=SecretStr(key) if key else None, api_key_env=key_env or KEY_ENVS[0], model=model,
                 profile=profile)


def _spec_route(name: str, spec: RouteSpec) -> Route:
    if spec.emulator:
        return Route(name=name, base_url=None, api_key=SecretStr(EMULATOR_KEY), api_key_env=None, model=spec.model,
                     profile=spec.profile, headers=spec.headers, params=spec.params, price=spec.price,
                     emulated=True, personality=spec.personality, fallback=spec.fallback)
    key_env = spec.api_key_env or KEY_ENVS[0]
    key = os.environ.get(key_env) or None
    remember(key)
    spec = spec if spec.profile or not os.environ.get(PROFILE_ENV) else spec.model_copy(
        update={"profile": os.environ[PROFILE_ENV]})
    base = spec.base_url or os.environ.get(BASE_URL_ENV)
    if not base:
        raise ConfigError(f"route {name!r} has no base_url", fix=f"set base_url in {CONFIG_FILE} or {BASE_URL_ENV}")
    return Route(name=name, base_url=base, api_key=SecretStr(key) if key else None, api_key_env=key_env,
                 model=spec.model, profile=spec.profile, headers=spec.headers, params=spec.params, price=spec.price,
                 fallback=spec.fallback)


def all_routes(config: ConfigFile | None = None) -> list[Route]:
    """Every route: the one from the environment first, then each table of k2probe.toml."""
    config = config or load_file()
    return [_env_route(), *(_spec_route(n, s) for n, s in config.routes.items())]


def resolve_route(name: str | None = None, config: ConfigFile | None = None) -> Route:
    """The route called `name`; without a name, k2probe.toml's default_route, else the environment's."""
    config = config or load_file()
    name = name or config.default_route
    if name is None or (name in ("env", "emulator") and name not in config.routes):
        route = _env_route()
        if name == "emulator" and not route.emulated:
            return Route(name="emulator", base_url=None, api_key=SecretStr(EMULATOR_KEY), api_key_env=None,
                         model=route.model, emulated=True)
        return route
    if name not in config.routes:
        known = ", ".join(["env", "emulator", *config.routes]) or "(none)"
        raise ConfigError(f"unknown route {name!r}", fix=f"known routes: {known}")
    return _spec_route(name, config.routes[name])


def parse_params(items: list[str]) -> dict[str, Any]:
    """Parse --param NAME=VALUE items; values are JSON when they parse as JSON, else strings."""
    import json

    params: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name or not name.replace("_", "").isalnum():
            raise ConfigError(f"bad --param {item[:80]!r}", fix="write NAME=VALUE, e.g. --param temperature=0.2")
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
        except RecursionError as exc:
            raise ConfigError(f"--param {name}: the value is nested too deeply", fix="send a simpler value") from exc
        try:
            check_param(name, params[name])
        except ValueError as exc:
            raise ConfigError(f"--param {exc}", fix="see `k2probe chat --help`") from exc
    return params
