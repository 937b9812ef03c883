"""Edit the configuration file in place: keep its comments and layout, never leave it half-written or invalid.

``edgecount lines set|flip|remove`` changes one line's entry through tomlkit (which keeps
every comment, blank line and key order of the technician's file), validates the
new text by reading it back with the same parser the appliance uses, and only
then swaps it in with an atomic rename.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from edgecount.runtime.files import FileChangedError, replace_text
from edgecount_core.config import ConfigError, LineSection, parse_config
from edgecount_core.messages import DEFAULT_CAMERA


def _camera_table(path: Path, doc: Any, camera: str | None) -> Any:
    """The table whose ``lines`` to edit: the file itself, or the ``[[cameras]]`` entry named ``camera``."""
    cameras = doc.get("cameras")
    if camera is None:
        if cameras:
            names = ", ".join(str(c.get("name")) for c in cameras)
            raise ConfigError(f"{path} has several cameras ({names}); say which with --camera NAME")
        return doc
    for entry in cameras or []:
        if entry.get("name") == camera:
            return entry
    if camera == DEFAULT_CAMERA and not cameras:
        return doc
    raise ConfigError(f"{path}: no camera {camera!r} (cameras: "
                      f"{', '.join(str(c.get('name')) for c in cameras or []) or DEFAULT_CAMERA})")


def _edit_lines(path: Path, camera: str | None, edit: Callable[[Any], None]) -> None:
    """Apply ``edit`` to the ``lines`` array of the file (of ``camera`` with ``[[cameras]]``), validate, swap in."""
    path = path.resolve()  # a symlinked configuration: edit what it points to, keep the link
    try:
        original = path.read_text(encoding="utf-8")
        doc = tomlkit.parse(original)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except TOMLKitError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    owner = _camera_table(path, doc, camera)
    lines = owner.get("lines")
    if lines is None:
        lines = tomlkit.aot()
        owner["lines"] = lines
    if not isinstance(lines, tomlkit.items.AoT):
        raise ConfigError(f"{path}: 'lines' must be an array of tables ([[lines]] or [[cameras.lines]]) to be "
                          "edited")
    edit(lines)
    write_validated(path, tomlkit.dumps(doc), original)


def _find(lines: Any, name: str) -> int:
    for i, entry in enumerate(lines):
        if entry.get("name") == name:
            return i
    known = ", ".join(str(e.get("name")) for e in lines) or "none"
    raise ConfigError(f"no line {name!r} (lines: {known}); see edgecount lines list")


def set_line(path: Path, line: LineSection, camera: str | None = None) -> None:
    """Add ``line`` to the file at ``path`` (to ``camera``'s lines with ``[[cameras]]``), or move the line of that
    name; ``ConfigError`` if it cannot."""
    def edit(lines: Any) -> None:
        for entry in lines:
            if entry.get("name") == line.name:
                entry["a"] = list(line.a)
                entry["b"] = list(line.b)
                return
        table = tomlkit.table()
        table["name"] = line.name
        table["a"] = list(line.a)
        table["b"] = list(line.b)
        lines.append(table)

    _edit_lines(path, camera, edit)


def flip_line(path: Path, name: str, camera: str | None = None) -> None:
    """Swap the ends of line ``name``, so that what it counted as ``in`` it counts as ``out``."""
    def edit(lines: Any) -> None:
        entry = lines[_find(lines, name)]
        entry["a"], entry["b"] = list(entry["b"]), list(entry["a"])

    _edit_lines(path, camera, edit)


def remove_line(path: Path, name: str, camera: str | None = None) -> None:
    """Delete line ``name`` (its counts already made stay in the history and the outbox)."""
    def edit(lines: Any) -> None:
        del lines[_find(lines, name)]

    _edit_lines(path, camera, edit)


def write_validated(path: Path, text: str, original: str | None = None) -> None:
    """Replace the file with ``text`` only if it parses and validates; readers see old or new, never half.
    The file keeps its mode and owner; with ``original`` (what the edit started from), a file someone saved
    in the meantime is not overwritten."""
    try:
        parse_config(tomllib.loads(text), source=str(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: the edited file would not be valid TOML ({exc}); nothing was written") from None
    st = path.stat()
    try:
        replace_text(path, text, st.st_mode & 0o777, owner=(st.st_uid, st.st_gid), unless_changed_from=original)
    except FileChangedError as exc:
        raise ConfigError(f"{exc}; nothing was written: run the command again") from None
