"""Plain data (YAML, JSON, a checkpoint's dict) -> the typed tree, every name and type checked;
durations written as text (``10m``) -> seconds."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Callable, Literal, TypeVar

from unetkit.errors import ConfigError

DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms])")


def parse_duration(text: str) -> float:
    """``10m``, ``1h30m``, ``90s``, ``1.5h`` or plain seconds (``600``) -> seconds."""
    text = str(text).strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if not text or DURATION.sub("", text):
        raise ConfigError(f"duration {text!r}: write it like 600, 90s, 10m or 1h30m")
    return sum(float(number) * DURATION_UNITS[unit] for number, unit in DURATION.findall(text))


T = TypeVar("T")

# Keys that configs of earlier versions hold and this one no longer uses: read and ignored, so old
# checkpoints and config files keep loading.
RETIRED_KEYS = {
    "config.data.normalize": {"scale"},  # the divisor comes from the image's dtype
    "config.train": {"warmup_epochs"},  # the warm-up is a share of the steps (train.warmup)
}

# Keys of earlier versions whose value another key now holds, converted: read into it, so old
# checkpoints keep their choice (a bool ``channels_last`` is the layout it named).
RENAMED_KEYS: dict[str, dict[str, tuple[str, Callable[[Any], Any]]]] = {
    "config.train": {"channels_last": ("memory_layout", lambda old: {True: "channels-last", False: "contiguous"}.get(old, old))},
}


def build(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from plain data, checking names and types; unknown keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    data = {key: value for key, value in data.items() if key not in RETIRED_KEYS.get(where, ())}
    for old, (new, convert) in RENAMED_KEYS.get(where, {}).items():
        if old in data:
            data.setdefault(new, convert(data.pop(old)))
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    values = {name: coerce(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    return cls(**values)


def coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [coerce(args[0], item, where) for item in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {coerce(args[0], k, where): coerce(args[1], v, where) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)  # YAML/JSON mapping keys may arrive as strings
    if hint in (int, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value
