"""Frozen dataclass configs <-> command-line flags, TOML files and JSON (cleanrl style).

Each field carries its help text in `metadata`; flags are the field names in kebab-case; a TOML file
given with --config sets defaults that flags then override.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import tomllib
import typing
from pathlib import Path
from typing import Any

from darkroom.errors import UserError


def option(default: Any, help: str, choices: tuple | None = None, low: float | None = None,
           above: float | None = None, high: float | None = None) -> Any:
    """A config field: default, help string, optional allowed values and bounds (low <= value, above < value,
    value <= high), checked with the value's type wherever a config is built (flags, TOML, a resumed run's JSON)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "low": low, "above": above,
                                                        "high": high})


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _base_type(annotation: Any) -> Any:
    """`int | None` -> int; `tuple[int, ...]` -> tuple marker."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _base_type(args[0])
    return annotation


def add_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        base = _base_type(hints[field.name])
        help_text = field.metadata.get("help", "").replace("%", "%%")  # argparse %-formats help texts
        default_text = f" (default: {field.default})".replace("%", "%%")
        if base is bool:
            parser.add_argument(flag_name(field.name), action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text + default_text)
        elif typing.get_origin(base) is tuple:
            item = typing.get_args(base)[0]
            parser.add_argument(flag_name(field.name), type=item, nargs="+", default=argparse.SUPPRESS,
                                help=help_text + default_text, metavar=field.name.upper())
        else:
            parser.add_argument(flag_name(field.name), type=base, default=argparse.SUPPRESS,
                                choices=field.metadata.get("choices"), help=help_text + default_text,
                                metavar=None if field.metadata.get("choices") else field.name.upper())


def from_sources(config_class: type, namespace: argparse.Namespace, toml_path: str | None = None) -> Any:
    """Defaults <- TOML file <- flags given on the command line."""
    values: dict[str, Any] = {}
    if toml_path:
        values.update(read_toml(config_class, Path(toml_path)))
    names = {field.name for field in dataclasses.fields(config_class)}
    values.update({key: value for key, value in vars(namespace).items() if key in names})
    return build(config_class, values)


def read_toml(config_class: type, path: Path) -> dict[str, Any]:
    try:
        values = tomllib.loads(path.read_text())
    except OSError as error:
        raise UserError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"config file {path} is not valid TOML: {error}") from None
    return check_values(config_class, {key.replace("-", "_"): value for key, value in values.items()},
                        f"config file {path}: ")


_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _typed(flag: str, value: Any, kind: Any) -> Any:
    """`value` as the field's type (an int is a fine float), or a UserError naming the flag."""
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{flag} must be a list, not {value!r}")
        return tuple(_typed(flag, item, typing.get_args(kind)[0]) for item in value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in _KINDS and (type(value) is not kind):
        raise UserError(f"{flag} must be {_KINDS[kind]}, not {value!r}")
    return value


def check_values(config_class: type, values: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Each value typed and within its field's choices and bounds; a UserError naming the first that is not."""
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    checked = {}
    for key, value in values.items():
        name = where + (key if where else flag_name(key))  # a TOML file's key as written there; else the flag
        if key not in fields:
            raise UserError(f"{where}unknown setting {key if where else flag_name(key)}")
        meta = fields[key].metadata
        optional = type(None) in typing.get_args(hints[key])
        value = None if value is None and optional else _typed(name, value, _base_type(hints[key]))
        choices = meta.get("choices")
        if choices and value not in choices:
            raise UserError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}")
        if value is not None and not isinstance(value, (str, bool, tuple)):
            if meta.get("low") is not None and value < meta["low"]:
                raise UserError(f"{name} must be at least {meta['low']:g}, not {value:g}")
            if meta.get("above") is not None and value <= meta["above"]:
                raise UserError(f"{name} must be greater than {meta['above']:g}, not {value:g}")
            if meta.get("high") is not None and value > meta["high"]:
                raise UserError(f"{name} must be at most {meta['high']:g}, not {value:g}")
        checked[key] = value
    return checked


def validate(config: Any) -> None:
    """Every field of a frozen config typed (an int becomes a float where a float is wanted) and within its choices
    and bounds, or a UserError naming the flag. Each config's __post_init__ calls it, so a config built in code, by
    dataclasses.replace, from flags, a TOML file or a resumed run's JSON is checked by the same rules."""
    fields = dataclasses.fields(config)
    checked = check_values(type(config), {field.name: getattr(config, field.name) for field in fields})
    for name, value in checked.items():
        object.__setattr__(config, name, value)


def build(config_class: type, values: dict[str, Any]) -> Any:
    """Construct (and so validate, see `validate`); an unknown key is a user error naming the flag."""
    names = {field.name for field in dataclasses.fields(config_class)}
    for key in values:
        if key not in names:
            raise UserError(f"unknown setting {flag_name(key)}")
    return config_class(**values)


def to_dict(config: Any) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(config).items()}


def from_dict(config_class: type, values: dict[str, Any]) -> Any:
    names = {field.name for field in dataclasses.fields(config_class)}
    return build(config_class, {key: value for key, value in values.items() if key in names})


def differences(old: Any, new: Any, ignore: tuple[str, ...]) -> list[str]:
    """Names of fields that differ between two configs of one class, skipping `ignore`."""
    return [field.name for field in dataclasses.fields(old)
            if field.name not in ignore and getattr(old, field.name) != getattr(new, field.name)]


def layered(config_class: type, presets: dict[str, dict], preset: str | None = None, toml_path: str | None = None,
            overrides: dict[str, Any] | None = None) -> Any:
    """The one path from settings to a config (train, lr-find, demo): defaults <- preset <- TOML file <- overrides
    (the flags given, or a demo's budget), validated once."""
    if preset is not None and preset not in presets:
        raise UserError(f"--preset {preset} is not one of {', '.join(presets)}")
    values: dict[str, Any] = dict(presets[preset]) if preset else {}
    if toml_path:
        values.update(read_toml(config_class, Path(toml_path)))
    values.update(overrides or {})
    return build(config_class, values)


def command_line(task: str, config: Any) -> str:
    """`darkroom train TASK --flag value ...` that rebuilds `config`: every setting away from its default, --out last
    (written into config.json, so the line comes from what the run used, not from how it was typed)."""
    words = ["darkroom", "train", task]
    fields = [field for field in dataclasses.fields(config) if field.name not in ("resume", "quiet", "out")]
    for field in fields:
        value = getattr(config, field.name)
        if value == field.default or value is None:
            continue
        if isinstance(value, bool):
            words.append(flag_name(field.name) if value else "--no-" + field.name.replace("_", "-"))
        elif isinstance(value, (tuple, list)):
            words += [flag_name(field.name), *map(str, value)]
        else:
            words += [flag_name(field.name), shlex.quote(str(value)) if str(value) else "''"]
    if getattr(config, "out", None):
        words += ["--out", shlex.quote(str(config.out))]
    return " ".join(words)
