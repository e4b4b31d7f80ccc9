from collections.abc import Mapping
from typing import Any

TRUE = {"1", "true", "yes"}
FALSE = {"0", "false", "no"}


def _convert(name: str, raw: str, like: Any) -> Any:
    try:
        if isinstance(like, bool):
            lowered = raw.strip().lower()
            if lowered in TRUE | FALSE:
                return lowered in TRUE
            raise ValueError(raw)
        if isinstance(like, int):
            return int(raw)
        if isinstance(like, float):
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a valid {type(like).__name__}") from exc
    return raw


def load_config(defaults: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Defaults overridden by APP_<KEY> variables, converted to each default's type."""
    config = dict(defaults)
    for key, value in defaults.items():
        name = f"APP_{key.upper()}"
        if name in env:
            config[key] = _convert(name, env[name], value)
    return config
