"""Model profiles: what each model accepts (fixed parameters, thinking, tool_choice), its limits and its prices."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from k2probe.core.envnames import PROFILE_ENV

FIXED_PARAM_NAMES = ("temperature", "top_p", "n", "presence_penalty", "frequency_penalty")


@dataclass(frozen=True)
class Price:
    """USD per million tokens, with where the figure came from and when."""

    cache_hit_input: float
    cache_miss_input: float
    output: float
    source: str
    as_of: str


@dataclass(frozen=True)
class MediaLimits:
    """Recommended media limits for a model (contract §6)."""

    image_max: tuple[int, int] = (4096, 2160)
    video_max: tuple[int, int] = (1920, 1080)
    body_max_bytes: int = 100 * 1024 * 1024


@dataclass(frozen=True)
class Profile:
    """What one model accepts and costs. `fixed` maps a sampling parameter to the only value the model accepts."""

    name: str
    fixed: dict[str, float] = field(default_factory=dict)
    thinking_forced: bool = False  # only {"type": "enabled"} may be sent
    tool_choice_allowed: tuple[str, ...] | None = None  # None: anything OpenAI accepts
    reasoning_in_history: bool = False  # assistant tool-call turns must carry reasoning_content back
    context_window: int = 262144
    default_max_tokens: int = 32768
    min_thinking_budget: int = 16000
    supports_image: bool = True
    supports_video: bool = True
    media: MediaLimits = field(default_factory=MediaLimits)
    price: Price | None = None


_KIMI_FIXED = {"temperature": 1.0, "top_p": 0.95, "n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0}
_PRICE_SOURCE = "third-party tables citing platform.kimi.ai pricing (docs/kimi-contract.md §7, unverified)"
_PRICE_DATE = "2026-11"


def _kimi(name: str, price: Price, *, forced: bool = True) -> Profile:
    return Profile(
        name=name,
        fixed=dict(_KIMI_FIXED) if forced else {},
        thinking_forced=forced,
        tool_choice_allowed=("auto", "none") if forced else None,
        reasoning_in_history=True,
        price=price,
    )


PROFILES: dict[str, Profile] = {
    "kimi-k2.7-code": _kimi("kimi-k2.7-code", Price(0.19, 0.95, 4.00, _PRICE_SOURCE, _PRICE_DATE)),
    "kimi-k2.7-code-highspeed": _kimi(
        "kimi-k2.7-code-highspeed", Price(0.38, 1.90, 8.00, _PRICE_SOURCE, _PRICE_DATE)
    ),
    "kimi-k2.6": _kimi("kimi-k2.6", Price(0.16, 0.95, 4.00, _PRICE_SOURCE, _PRICE_DATE)),
    "kimi-k2.5": _kimi("kimi-k2.5", Price(0.10, 0.60, 3.00, _PRICE_SOURCE, _PRICE_DATE)),
    "openai-compatible": Profile(name="openai-compatible", default_max_tokens=4096, supports_video=False),
}


GENERIC = "openai-compatible"


CONFIGURED, MODEL_ID, MODEL_INFO, MODEL_LIST, ANSWER, NOT_FOUND = (
    "configured", "model id", "gateway /model/info", "gateway /models", "answer's model field", "generic")
INFERRED = (MODEL_INFO, MODEL_LIST, ANSWER)


@dataclass(frozen=True)
class ProfileChoice:
    """The profile a route uses and how k2probe came to it (one of the names above), said in every command."""

    profile: Profile
    how: str
    detail: str = ""  # what the route said, e.g. "the gateway's /model/info maps it to 'moonshot/kimi-k2.7-code'"
    cached_at: float | None = None  # when an inference was made, if read back from K2PROBE_HOME

    @property
    def generic(self) -> bool:
        return self.profile.name == GENERIC

    @property
    def inferred(self) -> bool:
        return self.how in INFERRED

    def source(self) -> str:
        """Where the profile came from, in a few words (the notice, doctor's profile rung, a run's snapshot)."""
        if self.how == CONFIGURED:
            return f"configured ({PROFILE_ENV} or profile = in k2probe.toml)"
        if self.how == MODEL_ID:
            return "named by the model id"
        when = ""
        if self.cached_at is not None:
            when = (f"; resolved {time.strftime('%Y-%m-%d %H:%M', time.localtime(self.cached_at))} and kept in "
                    "K2PROBE_HOME/profiles.json, `k2probe doctor` resolves it again")
        return f"{self.detail or self.how}{when}"

    def notice(self, route: str, model: str) -> str | None:
        """What the user is told about a profile not named by configuration or the model id (None otherwise)."""
        if self.inferred:
            return (f"route {route}: model {model!r} matches no known profile; {self.source()}, so the "
                    f"{self.profile.name} profile is used (inferred). Make it explicit: {PROFILE_ENV}="
                    f"{self.profile.name} or profile = \"{self.profile.name}\" in k2probe.toml")
        if not self.generic:
            return None
        why = f" ({self.source()})" if self.detail else ""
        return (f"route {route}: model {model!r} matches no known profile{why}: using the generic OpenAI-compatible "
                f"one (no fixed parameters, a {self.profile.default_max_tokens}-token budget, cost unknown). If this "
                f"is Kimi behind a gateway alias, set {PROFILE_ENV} (one of: {', '.join(kimi_profiles())}) or "
                f"profile = \"…\" in k2probe.toml")


def kimi_profiles() -> list[str]:
    return [name for name in PROFILES if name != GENERIC]


def known_in(text: str) -> Profile | None:
    """The Kimi profile whose model id appears in `text` (an answer's model field, a /models entry, an alias),
    the longest match first so kimi-k2.7-code-highspeed is not read as kimi-k2.7-code."""
    lowered = text.lower()
    for name in sorted(kimi_profiles(), key=len, reverse=True):
        if name in lowered:
            return PROFILES[name]
    return None


def choose_profile(model: str, explicit: str | None = None) -> ProfileChoice:
    """The profile named explicitly (KIMI_CODING_PROFILE or `profile =`), else the one the model id names, else the
    generic one — saying which. Offline: client.routeprofile.resolve_profile asks the route when this is generic."""
    if explicit:
        return ProfileChoice(profile_for(model, explicit), CONFIGURED)
    found = known_in(model)
    if found is not None:
        return ProfileChoice(found, MODEL_ID)
    return ProfileChoice(PROFILES[GENERIC], NOT_FOUND)


def profile_for(model: str, explicit: str | None = None) -> Profile:
    """The profile named explicitly, else the one whose model id ends the given model (gateway prefixes allowed)."""
    if explicit:
        if explicit not in PROFILES:
            from k2probe.core.errors import ConfigError

            raise ConfigError(
                f"unknown profile {explicit!r}", fix=f"use one of: {', '.join(sorted(PROFILES))}"
            )
        return PROFILES[explicit]
    bare = model.rsplit("/", 1)[-1]
    return PROFILES.get(bare, PROFILES["openai-compatible"])
