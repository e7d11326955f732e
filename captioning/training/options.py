"""Typed run configuration for every training command: a dataclass is the schema.

Each leaf field of the (possibly nested) dataclass is one flat key, a command-line flag and a YAML key
(`model.reinforce.samples` -> `reinforce_samples` -> `--reinforce-samples`). Precedence: the
dataclass defaults < the run folder's saved config (when resuming) < `--config` YAML < command line.
The resolved config is saved flat as RUN/config.yaml, which is itself a valid `--config`. YAML values
are checked and converted like the command line would; every problem is one ValueError line naming
the file and the key."""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from ..small_files import load_yaml, read_small_text

RUN_CONFIG = "config.yaml"
C = TypeVar("C")


@dataclass(frozen=True)
class Key:
    """One flat key: where it lives in the dataclass, its type, default, choices and help."""

    name: str                        # flat name: hidden_dim
    path: str                        # dotted attribute path: model.hidden_dim
    type: type                       # int | float | str | bool (an Enum field: str with its values as choices)
    optional: bool                   # None allowed
    default: Any
    choices: tuple | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def read_yaml_mapping(path: str | os.PathLike) -> dict[Any, Any]:
    """A config file's top-level mapping (empty file: {}); a missing file or bad YAML is one ValueError line."""
    path = Path(path)
    try:
        data = load_yaml(read_small_text(path, "config file"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{path}: invalid YAML ({problem[:200]})") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file is a mapping of option: value")
    return data


def _flat_name(path: str, flatten: str) -> str:
    """model.hidden_dim -> hidden_dim, model.reinforce.samples -> reinforce_samples."""
    return path.removeprefix(flatten).replace(".", "_")


def _leaves(cls: type, prefix: str = "") -> Iterable[tuple[str, Any, Any]]:
    """(dotted path, type hint, default) of every leaf field; nested dataclasses are flattened."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from _leaves(type(default), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hints[f.name], default


def _key(name: str, path: str, hint: Any, default: Any, choices: tuple | None) -> Key:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    if isinstance(base, type) and issubclass(base, Enum):
        choices = choices or tuple(m.value for m in base)
        base = str
        default = default.value if isinstance(default, Enum) else default
    return Key(name, path, base, type(None) in typing.get_args(hint), default, choices)


class ConfigSchema(Generic[C]):
    """Flags, YAML reading, saving and resolution of the dataclass `cls`.

    `flatten`: the prefix dropped from nested keys ("model." puts the model's fields at top level).
    `choices`: valid values of string keys, or a function returning them (a registry that can still grow). `resumable`: keys a resumed run may change (every other
    key must match the run folder's saved config). `path_keys`: made absolute when resolved."""

    def __init__(self, cls: type[C], *, flatten: str = "model.",
                 choices: Mapping[str, Iterable | Callable[[], Iterable]] | None = None,
                 resumable: Iterable[str] = (), path_keys: Iterable[str] = (), command: str = "train"):
        self.cls = cls
        self._choices = dict(choices or {})
        self.keys: dict[str, Key] = {}
        for path, hint, default in _leaves(cls):
            name = _flat_name(path, flatten)
            self.keys[name] = _key(name, path, hint, default, None)
        self.resumable = frozenset(resumable)
        self.path_keys = tuple(path_keys)
        self.command = command

    def choices(self, name: str) -> tuple | None:
        """The valid values of key `name` now (None: any)."""
        given = self._choices.get(name)
        if given is None:
            return self.keys[name].choices
        return tuple(given() if callable(given) else given)

    # ---- flat values <-> the dataclass ------------------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        return {k.name: k.default for k in self.keys.values()}

    def to_flat(self, config: C) -> dict[str, Any]:
        out = {}
        for key in self.keys.values():
            node: Any = config
            for part in key.path.split("."):
                node = getattr(node, part)
            out[key.name] = node.value if isinstance(node, Enum) else node
        return out

    def from_flat(self, values: Mapping[str, Any]) -> C:
        nested: dict[str, Any] = {}
        for name, value in values.items():
            parts = self.keys[name].path.split(".")
            node = nested
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        return self.cls(**nested)

    # ---- command line ----------------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser, help: Mapping[str, str] | None = None,
                      groups: Mapping[str, Iterable[str]] | None = None) -> None:
        """One `--flag` per key; unset flags stay out of the namespace, so they never override the YAML.
        `groups` (title -> keys) orders the help; keys in no group go under "options"."""
        help = help or {}
        grouped = {title: list(names) for title, names in (groups or {}).items()}
        rest = [k for k in self.keys if not any(k in names for names in grouped.values())]
        if rest:
            grouped["options"] = rest
        for title, names in grouped.items():
            group = parser.add_argument_group(title)
            for name in names:
                self._add(group, self.keys[name], help.get(name, name.replace("_", " ")), self.choices(name))

    @staticmethod
    def _add(group: Any, key: Key, text: str, choices: tuple | None) -> None:
        text = f"{text} (default: {key.default})"
        if key.type is bool:
            group.add_argument(key.flag, dest=key.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=text)
        else:
            group.add_argument(key.flag, dest=key.name, type=key.type, default=argparse.SUPPRESS, choices=choices,
                               metavar=None if choices else (key.name if key.type is str else key.type.__name__).upper(),
                               help=text)

    def given(self, args: argparse.Namespace) -> dict[str, Any]:
        """The keys set on the command line."""
        return {k: v for k, v in vars(args).items() if k in self.keys}

    # ---- YAML --------------------------------------------------------------------------------------------
    def coerce(self, name: str, value: Any, where: str) -> Any:
        """A YAML value checked and converted like the command line would ("4e-3" -> 0.004)."""
        key = self.keys[name]
        if value is None:
            if not key.optional:
                raise ValueError(f"{where}: {name} cannot be empty")
            return None
        if key.type is bool or isinstance(value, bool):
            if key.type is not bool or not isinstance(value, bool):
                raise ValueError(f"{where}: {name} must be {'true or false' if key.type is bool else key.type.__name__}"
                                 f", got {value!r}")
            return value
        converted = None
        if not (key.type is int and isinstance(value, float) and not value.is_integer()):
            try:
                converted = key.type(value)
            except (TypeError, ValueError):
                pass
        if converted is None or (key.type is str and not isinstance(value, (str, int, float))):
            raise ValueError(f"{where}: {name} must be {key.type.__name__}, got {value!r}")
        choices = self.choices(name)
        if choices is not None and converted not in choices:
            raise ValueError(f"{where}: invalid {name} {converted!r} (choose from {', '.join(map(str, choices))})")
        return converted

    def read_yaml(self, path: str | os.PathLike) -> dict[str, Any]:
        """A `--config` file (or a saved RUN/config.yaml) as checked flat values."""
        data = {str(k).replace("-", "_"): v for k, v in read_yaml_mapping(path).items()}
        unknown = sorted(k for k in data if k not in self.keys)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)} (valid: {', '.join(self.keys)})")
        return {k: self.coerce(k, v, str(path)) for k, v in data.items()}

    def write(self, run_dir: str | os.PathLike, config: C) -> Path:
        """RUN/config.yaml, written atomically."""
        path = Path(run_dir) / RUN_CONFIG
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"# resolved training config; `{self.command} --config` accepts this file\n")
            yaml.safe_dump(self.to_flat(config), fh, sort_keys=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
        return path

    # ---- resolution --------------------------------------------------------------------------------------
    def _resolve(self, run_dir: Path, yaml_path: str | os.PathLike | None, overrides: Mapping[str, Any],
                 resuming: bool) -> tuple[dict[str, Any], dict[str, str]]:
        """Defaults < saved run config < YAML < command line, as flat values (paths absolute; a resumed run may
        change only the resumable keys), and for each value not a default where it came from (a file or a flag)."""
        saved_path = Path(run_dir) / RUN_CONFIG
        saved = self.read_yaml(saved_path) if saved_path.is_file() else {}
        from_yaml = self.read_yaml(yaml_path) if yaml_path else {}
        values = {**self.defaults(), **saved, **from_yaml, **overrides}
        origins = {**dict.fromkeys(saved, str(saved_path)), **dict.fromkeys(from_yaml, str(yaml_path)),
                   **{k: self.keys[k].flag for k in overrides}}
        for key in self.path_keys:
            if values[key] is not None:
                values[key] = str(Path(values[key]).expanduser().absolute())
        if resuming and saved:
            changed = [f"{k}={saved[k]!r} (now {values[k]!r})" for k in saved
                       if k not in self.resumable and values[k] != saved[k]]
            if changed:
                raise ValueError(f"{run_dir} holds a run trained with {', '.join(changed)}; rerun with the same "
                                 "settings to resume, or pick a new --out")
        return values, origins

    def resolve(self, run_dir: Path, yaml_path: str | os.PathLike | None, overrides: Mapping[str, Any],
                resuming: bool, required: Iterable[str] = ()) -> C:
        """The resolved config; a value out of its bounds is reported with where it came from (the flag, the
        `--config` file or the run's saved config.yaml), and a default with no source at all."""
        values, origins = self._resolve(run_dir, yaml_path, overrides, resuming)
        for key in required:
            if values[key] is None:
                raise ValueError(f"{self.keys[key].flag} is required (on the command line or in --config)")
        try:
            return self.from_flat(values)
        except ValueError as exc:
            raise ValueError(self._attributed(str(exc), origins)) from None

    def _attributed(self, message: str, origins: Mapping[str, str]) -> str:
        for name, key in self.keys.items():
            spellings = tuple(f"{s} " for s in (name, key.path, key.path.partition('.')[2], key.flag) if s)
            if message.startswith(spellings):
                origin = origins.get(name)
                return f"{origin}: {message}" if origin and not message.startswith(origin) else message
        return message
