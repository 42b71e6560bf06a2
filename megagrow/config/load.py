"""Loading: YAML + ``include:`` + model presets + dotted overrides -> a typed, validated :class:`Config`; the
resolved tree back to YAML; the field documentation; a checkpoint's config rebuilt leniently."""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from megagrow.config.schema import Config, ConfigError
from megagrow.config.validate import suggest, validate
from megagrow.growth.config import translate_legacy
from megagrow.models.sizes import SIZES


def _coerce(value: Any, tp: Any, where: str, problems: list[str]) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            return None
        return _coerce(value, args[0], where, problems)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, bool) and {"on", "off"} <= set(allowed):  # YAML 1.1 reads on/off as booleans
            value = "on" if value else "off"
        if value in allowed:
            return value
        sval = str(value)
        if sval in allowed:
            return sval
        problems.append(f"{where}={value!r}: expected one of {list(allowed)}" + suggest(sval, map(str, allowed)))
        return allowed[0]
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            text = value.strip().strip("[]")
            value = [v.strip() for v in text.split(",")] if text else []
        if not isinstance(value, list | tuple):
            problems.append(f"{where}={value!r}: expected a list, e.g. [1, 3, 6]")
            return []
        return [_coerce(v, item, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        problems.append(f"{where}={value!r}: expected a boolean (true/false)")
        return False
    if tp is int:
        if isinstance(value, bool):
            problems.append(f"{where}={value!r}: expected an integer")
            return 0
        if isinstance(value, int):
            return value
        try:
            f = float(str(value).replace("_", ""))
            if f.is_integer():
                return int(f)
        except ValueError:
            pass
        problems.append(f"{where}={value!r}: expected an integer")
        return 0
    if tp is float:
        if isinstance(value, bool):
            problems.append(f"{where}={value!r}: expected a number")
            return 0.0
        try:
            return float(value)
        except (TypeError, ValueError):
            problems.append(f"{where}={value!r}: expected a number (e.g. 3e-4)")
            return 0.0
    if tp is str:
        if isinstance(value, dict | list):
            problems.append(f"{where}={value!r}: expected a string")
            return ""
        return str(value)
    raise TypeError(f"config field {where}: unsupported annotation {tp!r}")


def _build(cls: type, data: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{prefix or 'config'}: expected a mapping of fields, got {data!r}")
        data = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            section = prefix.rstrip(".") or "config"
            problems.append(f"unknown config key '{where}'{hint} (valid keys of '{section}': {sorted(fields)})")
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value if value is not None else {}, f"{where}.", problems)
        else:
            kwargs[key] = _coerce(value, tp, where, problems)
    return cls(**kwargs)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _translated(tree: dict[str, Any], where: str, notes: list[str] | None) -> dict[str, Any]:
    """``tree`` (one file's own keys, or the overrides) with older configs' flat growth keys moved into their
    sections (:func:`~megagrow.growth.config.translate_legacy`), each source on its own so that an old key given
    as an override still overrides a new-style file."""
    tree, moved, problems = translate_legacy(tree)
    if problems:
        raise ConfigError(problems, where)
    if notes is not None:
        notes += [f"{where}: {m}" for m in moved]
    return tree


def _read_yaml(path: Path, seen: tuple[Path, ...] = (), notes: list[str] | None = None) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError([f"include cycle: {' -> '.join(map(str, (*seen, path)))}"])
    if not path.is_file():
        raise ConfigError([f"config file not found: {path}"])
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError([_yaml_problem(path, e, seen)]) from e
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping at the top level, got {type(data).__name__}"])
    includes = data.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict[str, Any] = {}
    for inc in includes:
        merged = _merge(merged, _read_yaml(path.parent / inc, (*seen, path), notes))
    return _merge(merged, _translated(data, str(path), notes))


def _yaml_problem(path: Path, e: yaml.YAMLError, seen: tuple[Path, ...]) -> str:
    """``FILE:LINE:COL: not valid YAML: what (context)``, naming the including file when there is one."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    what = " ".join(str(x) for x in (getattr(e, "problem", None), getattr(e, "context", None)) if x) or str(e)
    ctx = getattr(e, "context_mark", None)
    if ctx is not None and mark is not None and ctx.line != mark.line:
        what += f" (started at line {ctx.line + 1})"
    line = ""
    if mark is not None:
        lines = path.read_text().splitlines()
        if 0 <= mark.line < len(lines):
            line = f"; line {mark.line + 1}: {lines[mark.line].strip()!r}"
    via = f" (included from {seen[-1]})" if seen else ""
    return f"{where}: not valid YAML: {what}{line}{via}"


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``['--optim.lr=3e-4', '--model.n_layers', '6']`` -> nested dict of strings."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--") or len(a) == 2:
            raise ConfigError([f"override {a!r}: expected --section.key=value"])
        key, eq, value = a[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise ConfigError([f"override --{key}: missing value (use --{key}=VALUE)"])
            value = args[i + 1]
            i += 1
        parts = key.split(".")
        if any(not part for part in parts):
            raise ConfigError([f"override --{key}: malformed key"])
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError([f"override --{key}: '{part}' is set both as a value and as a section"])
            node = nxt
        node[parts[-1]] = value
        i += 1
    return out


def _apply_model_preset(model: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    size = model.get("size")
    if size in (None, "", "none", "None"):
        return model
    if size not in SIZES:
        problems.append(f"model.size={size!r}: unknown size; available: {sorted(SIZES)}" + suggest(str(size), SIZES))
        return model
    return {**SIZES[size], **model}


def config_from_dict(data: dict[str, Any], source: str = "") -> Config:
    data, legacy_notes, problems = translate_legacy(data)
    notes = legacy_notes + _preset_notes(data.get("model"))
    if isinstance(data.get("model"), dict):
        data["model"] = _apply_model_preset(data["model"], problems)
    cfg = _build(Config, data, "", problems)
    if not problems:
        problems = validate(cfg)
    if problems:
        raise ConfigError(problems, source)
    cfg.__dict__["load_notes"] = notes  # not a field: never saved; shown with the warnings when a run starts
    return cfg


def _preset_notes(model: Any) -> list[str]:
    """Warnings about a preset (``model.size``) whose width was overridden but whose MLP width was not: the
    preset's ``ffn`` (4 x its own hidden) stays, which is rarely what was meant."""
    if not isinstance(model, dict) or model.get("size") not in SIZES:
        return []
    preset = SIZES[model["size"]]
    if "hidden" in model and "ffn" not in model and preset.get("ffn") and model["hidden"] != preset.get("hidden"):
        return [f"model.hidden={model['hidden']} overrides model.size={model['size']}'s hidden {preset['hidden']}, "
                f"but model.ffn stays the preset's {preset['ffn']} (4 x {preset['hidden']}); set --model.ffn="
                f"{4 * int(model['hidden'])} for the usual 4 x hidden (or 0, which means that), or set it explicitly "
                "to silence this"]
    return []


def config_tree(path: str | Path | None, overrides: list[str] | None = None,
                notes: list[str] | None = None) -> dict[str, Any]:
    """The raw tree a config is built from: the YAML file with its includes, then the overrides (unvalidated).
    Older configs' flat growth keys are moved into their sections, each file and the overrides on their own; a
    line per move is appended to ``notes``."""
    data: dict[str, Any] = _read_yaml(Path(path), notes=notes) if path else {}
    return _merge(data, _translated(parse_overrides(overrides or []), "overrides", notes))


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML file (or defaults when ``path`` is None), apply ``--a.b=c`` overrides, validate."""
    moved: list[str] = []
    data = config_tree(path, overrides, moved)
    cfg = config_from_dict(data, str(path or "defaults"))
    cfg.__dict__["load_notes"] = moved + cfg.__dict__.get("load_notes", [])
    if not cfg.run.name and path:
        cfg.run.name = Path(path).stem
    return cfg


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def describe(cls: type = Config, prefix: str = "") -> list[str]:
    """Documentation of every field: ``section.key (type, default): help``."""
    lines: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(f"{prefix}{f.name}: {f.metadata.get('help', '')}")
            lines.extend(describe(tp, f"{prefix}{f.name}."))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            tname = _type_name(tp)
            lines.append(f"  --{prefix}{f.name} ({tname}, default {default!r}): {f.metadata.get('help', '')}")
    return lines


def _type_name(tp: Any) -> str:
    """``int``, ``one of a|b|c``, ``list[int]``, ``float | None`` — for the field documentation."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + "|".join(map(str, typing.get_args(tp)))
    if origin is list:
        return f"list[{_type_name(typing.get_args(tp)[0])}]"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) if a is not type(None) else "None" for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def expand_path(path: str) -> Path:
    """Expand ``${MEGAGROW_CACHE}`` (default ``~/.cache/megagrow``), other env vars and ``~``."""
    cache = os.environ.get("MEGAGROW_CACHE") or str(Path.home() / ".cache" / "megagrow")
    return Path(os.path.expanduser(os.path.expandvars(path.replace("${MEGAGROW_CACHE}", cache))))



def config_from_meta(tree: Mapping[str, Any], cls: type | None = None) -> Any:
    """A typed config rebuilt from a checkpoint's ``config`` dict, leniently: fields another megagrow version
    did not write keep their defaults, fields this version does not know are ignored. No validation."""
    if cls is None:
        cls, tree = Config, translate_legacy(tree)[0]  # a checkpoint of a megagrow before the growth sections
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in tree:
            continue
        value, tp = tree[f.name], hints[f.name]
        kwargs[f.name] = config_from_meta(value, tp) if dataclasses.is_dataclass(tp) and isinstance(value, Mapping) \
            else value
    return cls(**kwargs)

