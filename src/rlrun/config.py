"""Typed, checked views of config groups.

Every config group that the code reads is described by a dataclass whose fields carry the rule their
value must obey. `from_config` builds one from the composed Hydra config and turns every problem into
a `ConfigError`: one line naming the key, the rule and the value, raised before anything trains.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

Rule = tuple[str, Callable[[Any], bool]]
POSITIVE: Rule = ("> 0", lambda v: v > 0)
NON_NEGATIVE: Rule = (">= 0", lambda v: v >= 0)
UNIT_INTERVAL: Rule = ("in [0, 1]", lambda v: 0 <= v <= 1)


def one_of(*choices: str) -> Rule:
    return ("one of " + ", ".join(choices), lambda v: v in choices)


class ConfigError(ValueError):
    """Bad user input: reported as one line, with a non-zero exit, before training starts."""


def rule(check: Rule) -> Any:
    """A required dataclass field whose value must satisfy `check` (None passes for Optional fields)."""
    return dataclasses.field(metadata={"rule": check})


def _type_ok(value: Any, annotation: Any) -> tuple[bool, Any]:
    """Whether `value` fits `annotation`; returns the value converted (int -> float, lists to list)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            ok, converted = _type_ok(value, option)
            if ok:
                return True, converted
        return False, value
    if annotation is type(None):
        return value is None, value
    if annotation is Any:
        return True, value
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if annotation is str:
        return isinstance(value, str), value
    if origin in (list, tuple):
        (item_type, *_) = typing.get_args(annotation) or (Any,)
        if isinstance(value, str) or not hasattr(value, "__iter__") or isinstance(value, Mapping):
            return False, value
        items = []
        for item in value:
            ok, converted = _type_ok(item, item_type)
            if not ok:
                return False, value
            items.append(converted)
        return True, items
    if origin is dict or annotation is dict:
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else value
    raise TypeError(f"unsupported config field type {annotation!r}")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def from_config(cls: type[T], mapping: Mapping[str, Any], where: str) -> T:
    """Build dataclass `cls` from `mapping` (a config group named `where`), checking every value."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in mapping:
        if key not in fields and key != "_target_":
            raise ConfigError(
                f"unknown key '{where}.{key}'; valid keys: {', '.join(fields)}")
    values = {}
    for name, field in fields.items():
        if name not in mapping:
            if field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING:
                continue
            raise ConfigError(f"missing key '{where}.{name}': add it to the config or pass {where}.{name}=...")
        value = mapping[name]
        ok, value = _type_ok(value, hints[name])
        if not ok:
            raise ConfigError(f"{where}.{name} must be of type {_type_name(hints[name])} (got {mapping[name]!r})")
        check = field.metadata.get("rule")
        if check is not None and value is not None and not check[1](value):
            raise ConfigError(f"{where}.{name} must be {check[0]} (got {value!r})")
        values[name] = value
    return cls(**values)


def check_folder_name(name: str | None, what: str) -> None:
    """A name that becomes one folder of a path (a study's outputs/tune/<name>/, a suite's outputs/bench/<name>/,
    an entry's runs/<label>/): one path component, so that `../../x` cannot write outside outputs/."""
    if name is None:
        return
    if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        raise ConfigError(f"{what} {name!r} must be a non-empty folder name, without '/' and not starting with '.'")


# The config groups and the run-level keys of conf/config.yaml: anything else at the top level is a typo
# (`+totl_steps=...`) that would otherwise train silently with the default. (Here, not in rlrun.run: the
# rlrun command reads them before it imports torch.)
GROUP_KEYS = ("algo", "env", "network", "hardware", "logger")
RUN_KEYS = ("seed", "total_steps", "schedule_steps", "resume", "eval", "checkpoint", "max_requeues")
