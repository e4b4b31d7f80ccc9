"""Model profiles: what each model accepts (fixed parameters, thinking, tool_choice), its limits and its prices."""

from __future__ import annotations

from dataclasses import dataclass, field

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
_PRICE_SOURCE = "third-party tables citing platform.kimi.ai pricing (kimi-contract.md §7, unverified)"
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


@dataclass(frozen=True)
class ProfileChoice:
    """The profile a route uses and how k2probe came to it: said in every command, never silent."""

    profile: Profile
    how: str  # "configured" | "model id" | "inferred from …" | "generic"

    @property
    def generic(self) -> bool:
        return self.profile.name == GENERIC

    def notice(self, route: str, model: str) -> str | None:
        """The warning a generic profile deserves (None when the profile is a known model's)."""
        if not self.generic:
            return None
        return (f"route {route}: model {model!r} matches no known profile: using the generic OpenAI-compatible one "
                f"(no fixed parameters, a {self.profile.default_max_tokens}-token budget, cost unknown). If this is "
                f"Kimi behind a gateway alias, set KIMI_CODING_PROFILE (one of: {', '.join(kimi_profiles())}) or "
                f"profile = \"…\" in k2probe.toml; `k2probe doctor` infers it from the route's answers")


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
    generic one — saying which."""
    if explicit:
        return ProfileChoice(profile_for(model, explicit), "configured")
    found = known_in(model)
    if found is not None:
        return ProfileChoice(found, "model id")
    return ProfileChoice(PROFILES[GENERIC], "generic")


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
