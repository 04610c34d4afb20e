"""The user's code folders, read for copying into the bundle: plain source files, inside the project.

A bundle carries a copy of every code folder the blueprint names (a model's or a data set's
`path`), so that editing the code while the job waits in a queue does not change what runs, and
the job needs no path of the computer it was compiled on. Only source files are copied: Python
modules and the plain text configuration that packages keep beside them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CODE_FOLDER = "code"  # in the bundle: code/<name>/...
SOURCE_SUFFIXES = (".py", ".json", ".toml", ".yaml", ".yml", ".cfg", ".ini")
# All code folders of a bundle together. A Kubernetes ConfigMap carries the bundle and holds at
# most 1 MiB, train.py and ir.json included; more source than this is a library to install.
MAX_BYTES = 512 * 1024
# Entries looked at in one folder tree, so that `path = "."` in a big repository stays fast in lint.
MAX_ENTRIES = 5000


class CodeFolderError(Exception):
    """A code folder that cannot be copied; the message says why, `help` what to do."""

    def __init__(self, message: str, help: str) -> None:
        super().__init__(message)
        self.help = help


@dataclass
class BundledCode:
    """The code folders of a blueprint as the bundle holds them."""

    # The `path` as written in the blueprint → where the job finds it: `code/<name>` in the
    # bundle, or an absolute path as written (a folder on the machine, not copied).
    folders: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # bundle path → text
    sources: dict[str, Path] = field(default_factory=dict)  # `code/<name>` → the folder copied
    size: int = 0


def add_folder(code: BundledCode, written: str, folder: Path, root: Path) -> None:
    """Read the source files of `folder` (a real path inside `root`) into `code` as `code/<name>`."""
    for name, source in code.sources.items():
        if source == folder:  # named twice (`src` and `./src`): copied once
            code.folders[written] = name
            return
    files = source_files(folder, root)
    size = code.size + sum(len(text.encode("utf-8")) for text in files.values())
    if size > MAX_BYTES:
        raise CodeFolderError(
            f"the code folders hold {size // 1024} KiB of source, more than a bundle carries ({MAX_BYTES // 1024} KiB)",
            "point `path` at the folder of your own modules; install libraries in the job's environment",
        )
    name = _unique(f"{CODE_FOLDER}/{_slug(folder.name)}", code.sources)
    code.size = size
    code.folders[written] = name
    code.sources[name] = folder
    code.files.update({f"{name}/{relative}": text for relative, text in sorted(files.items())})


def source_files(folder: Path, root: Path) -> dict[str, str]:
    """Return the source files under `folder` by their path relative to it (posix), as text.

    Hidden entries and `__pycache__` are skipped; a link is followed only to a place inside `root`.
    """
    found: dict[str, str] = {}
    seen = {folder}
    pending = [(folder, "")]
    entries = 0
    while pending:
        here, prefix = pending.pop()
        try:
            children = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as exc:
            raise CodeFolderError(f"cannot read `{prefix or '.'}`: {exc.strerror}", "check its permissions") from None
        for entry in children:
            entries += 1
            if entries > MAX_ENTRIES:
                raise CodeFolderError(
                    f"more than {MAX_ENTRIES} files and folders under it",
                    "point `path` at the folder of your own modules, not at a whole repository",
                )
            name = entry.name
            if name.startswith(".") or name == "__pycache__":
                continue
            shown = prefix + name
            real = Path(os.path.realpath(entry.path))
            if entry.is_symlink() and not real.is_relative_to(root):
                raise CodeFolderError(f"`{shown}` links to a place outside the project", "copy the file into the folder instead")
            if real.is_dir():
                if real not in seen:
                    seen.add(real)
                    pending.append((real, shown + "/"))
            elif name.endswith(SOURCE_SUFFIXES) and real.is_file():
                found[shown] = _text(real, shown)
    return found


def _text(path: Path, shown: str) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise CodeFolderError(f"`{shown}` holds {size // 1024} KiB, more than a bundle carries", "keep data out of the code folder")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CodeFolderError(f"`{shown}` is not UTF-8 text", "save it as UTF-8") from None
    except OSError as exc:
        raise CodeFolderError(f"cannot read `{shown}`: {exc.strerror}", "check its permissions") from None


def _slug(name: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in name).strip("-.") or CODE_FOLDER


def _unique(name: str, taken: dict[str, Path]) -> str:
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}-{number}"
    return candidate
