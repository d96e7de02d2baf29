"""Role configs as one TOML section mapped onto a frozen dataclass: unknown keys, wrong
types and missing keys are errors that name the file, the section and the key."""

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from chain_client.params import ConfigError

__all__ = ["load_section", "render_section"]

T = TypeVar("T")
_ACCEPTED: dict[str, tuple[type, ...]] = {
    "Path": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
}


def _convert(source: str, key: str, value: object, annotation: Any) -> object:
    name = annotation if isinstance(annotation, str) else annotation.__name__
    accepted = _ACCEPTED[name]
    # TOML booleans are ints to Python; a flag is never a number here, and vice versa.
    if isinstance(value, bool) != (bool in accepted) or not isinstance(value, accepted):
        raise ConfigError(source, key, f"wrong type: {value!r}")
    if name == "Path":
        return Path(str(value))
    if name == "float":
        return float(value)  # type: ignore[arg-type]
    return value


def load_section(cls: type[T], path: Path, section: str, required: tuple[str, ...]) -> T:
    """``cls(**[section])`` with every value checked; ``cls`` has a ``source`` field."""
    source = str(path)
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(file)", f"not TOML: {exc}") from None
    table = document.get(section)
    if not isinstance(table, dict):
        raise ConfigError(source, f"[{section}]", "missing section")
    known = {f.name: f for f in fields(cls) if f.name != "source"}  # type: ignore[arg-type]
    values: dict[str, Any] = {"source": source}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(source, f"{section}.{key}", "unknown key")
        try:
            values[key] = _convert(source, key, value, known[key].type)
        except ConfigError as exc:
            raise ConfigError(source, f"{section}.{key}", exc.reason) from None
    for key in required:
        if key not in values:
            raise ConfigError(source, f"{section}.{key}", "missing")
    return cls(**values)


def render_section(config: object, section: str) -> str:
    lines = [f"[{section}]"]
    for item in fields(config):  # type: ignore[arg-type]
        if item.name == "source":
            continue
        value = getattr(config, item.name)
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, int | float):
            rendered = repr(value)
        else:
            rendered = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{item.name} = {rendered}")
    return "\n".join(lines) + "\n"
