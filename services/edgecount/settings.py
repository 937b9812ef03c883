"""Reading the TOML configuration file and resolving its directories."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from edgecount_core.config import Config, ConfigError, parse_config


def load_config(path: str | os.PathLike[str] | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a configuration file; ``None`` means all defaults."""
    data: dict[str, Any] = {}
    name = str(path) if path else "defaults"
    if path:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from None
    if overrides:
        data = merge(data, overrides)
    return parse_config(data, source=name)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def runtime_dir(cfg: Config) -> Path:
    if cfg.runtime.dir:
        return Path(cfg.runtime.dir)
    xdg = os.environ.get("RUNTIME_DIRECTORY") or os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "edgecount" if xdg and not xdg.endswith("edgecount") else Path(
        xdg or "/run/edgecount")


def state_dir(cfg: Config) -> Path:
    if cfg.runtime.state_dir:
        return Path(cfg.runtime.state_dir)
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgecount"


def to_toml(data: dict[str, Any]) -> str:
    """Serialise a config mapping back to TOML (enough for our own schema)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
    for k, v in data.items():
        if k not in tables and k not in arrays:
            lines.append(f"{k} = {value(v)}")
    for k, t in tables.items():
        lines.append(f"\n[{k}]")
        lines.extend(f"{kk} = {value(vv)}" for kk, vv in t.items())
    for k, arr in arrays.items():
        for item in arr:
            lines.append(f"\n[[{k}]]")
            lines.extend(f"{kk} = {value(vv)}" for kk, vv in item.items())
    return "\n".join(lines) + "\n"
