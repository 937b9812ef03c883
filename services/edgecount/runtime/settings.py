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
        data = _read_toml(Path(path))
    if overrides:
        data = merge(data, overrides)
    return parse_config(data, source=name)


def _read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML, or one ``ConfigError`` line naming the file and the problem (never a traceback:
    under systemd an unreadable configuration must end in exit status 2, which is not retried)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} on line {line}); fix: save the file "
                          "as UTF-8") from None
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))  # a byte-order mark from a Windows editor is harmless
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def with_private_runtime(data: dict[str, Any], runtime: Path) -> dict[str, Any]:
    """A configuration mapping that keeps sockets, state and the local sink's file inside ``runtime``,
    so a replay never resumes from, or writes into, an earlier run's or the appliance's own."""
    data["runtime"] = {"dir": str(runtime), "state_dir": str(runtime / "state")}
    data.setdefault("uplink", {})["jsonl_path"] = str(runtime / "state" / "uplink.jsonl")
    return data


def for_replay(data: dict[str, Any], runtime: Path, publish: bool = False) -> dict[str, Any]:
    """A configuration mapping for a replay (the pipeline, or one service over a recording): private runtime and
    state, and never the device's identity on its broker.

    By default only the local JSON-lines sink delivers: a recording carries the production broker and webhook,
    and a replay that logs in as the device closes the device's own session (same client id), flaps its
    retained status and sends its counts again. With ``publish`` the configured sinks deliver too, as a device
    of its own: the id ``<id>-replay`` (its topics and record ids) and a client id no device can have
    (``/`` is not allowed in a site or device name)."""
    import secrets

    with_private_runtime(data, runtime)
    up = data.setdefault("uplink", {})
    sinks = [s for s in up.get("sinks", ["jsonl"]) if s != "jsonl"]
    if not publish:
        up["sinks"] = ["jsonl"]
        return data
    up["sinks"] = ["jsonl", *sinks]
    device = data.setdefault("device", {})
    device["id"] = f"{device.get('id', 'edgecount-1')}-replay"
    up.setdefault("mqtt", {})["client_id"] = f"edgecount/replay/{secrets.token_hex(6)}"
    return data


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

    def table(prefix: str, d: dict[str, Any], out: list[str], array_item: bool = False) -> None:
        # TOML has no null: a None is an unset optional key, left out so it keeps its default.
        scalars = {k: v for k, v in d.items() if v is not None and not isinstance(v, dict)
                   and not (isinstance(v, list) and v and isinstance(v[0], dict))}
        if array_item:
            out.append(f"\n[[{prefix}]]")
        elif prefix and (scalars or not d):
            out.append(f"\n[{prefix}]")
        out.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                table(name, v, out)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:  # [[cameras]] holding its own [[cameras.lines]]
                    table(name, item, out, array_item=True)

    lines: list[str] = []
    table("", data, lines)
    return "\n".join(lines).lstrip("\n") + "\n"
