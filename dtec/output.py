"""Where commands write: files replaced atomically, bundle folders that never take a user's file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

MANIFEST = "manifest.json"
_NAME_BYTES = 64  # each part of a default folder name; two parts stay far below NAME_MAX (255)


class OutputError(Exception):
    """A write that failed or was refused, said in one line: `cannot write PATH: REASON; HINT`."""

    def __init__(self, path: object, reason: str, hint: str = "") -> None:
        super().__init__(f"cannot write {path}: {reason}" + (f"; {hint}" if hint else ""))


def failed(exc: OSError, path: object, hint: str = "") -> OutputError:
    """Say an OSError as a one-line OutputError, naming the path the system refused."""
    return OutputError(exc.filename or path, exc.strerror or str(exc), hint)


def write_atomic(path: Path, text: str, mode: int) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path` in one step."""
    # A short prefix: the temporary name must fit wherever the final name fits.
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:32]}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(path, exc.strerror or str(exc)) from None  # not the temporary name
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(path, exc.strerror or str(exc)) from None
        raise


def write_file(path: Path, text: str) -> None:
    """Write one named file (its folder made as needed), replacing a file but never a folder."""
    if path.is_dir():
        raise OutputError(path, "a folder", "give -o a file name")
    make_folder(path.parent)
    write_atomic(path, text, 0o644)


def make_folder(folder: Path) -> None:
    """Make a folder and its parents, saying which path is in the way when that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(exc.filename or folder, "not a folder", "choose a folder with -o") from None
    except OSError as exc:
        raise failed(exc, folder, "choose another folder with -o") from None


def default_folder(root: str, twin: str, target: str) -> Path:
    """`root/<twin>-<target>`, each part a safe file name of at most 64 bytes, the same every time."""
    return Path(root) / f"{safe_name(twin)}-{safe_name(target)}"


def safe_name(name: str) -> str:
    """`name` as a file name: other characters as `-`, at most 64 bytes, the same every time."""
    return _short(_slug(name))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.") or "twin"


def _short(name: str) -> str:
    """Cut a name longer than 64 bytes and end it with a hash of the whole, so that names stay distinct."""
    encoded = name.encode("utf-8")
    if len(encoded) <= _NAME_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:12]
    head = encoded[: _NAME_BYTES - len(digest) - 1].decode("utf-8", "ignore").rstrip("-.")
    return f"{head}-{digest}"


def plan_bundle(folder: Path, files: Mapping[str, str], *, force: bool) -> list[str]:
    """Check that `files` may be written into `folder`; return the old bundle's files to remove.

    A folder may take a bundle when it is absent, empty, or a bundle itself (its manifest.json
    was written by dtec). In a bundle, only files its manifest lists, unchanged since, are
    replaced or removed; every other file (run/, logs/, the user's notes) stays. `force` writes
    over anything in the way.
    """
    try:
        if not folder.is_dir():
            if folder.exists() or folder.is_symlink():
                raise OutputError(folder, "not a folder", "choose a folder with -o")
            return []
        present = {entry.name for entry in folder.iterdir()}
    except OSError as exc:
        raise failed(exc, folder) from None
    if not present:
        return []
    listed = _manifest(folder)
    if listed is None:
        if force:
            return []
        raise OutputError(
            folder,
            "not empty and not a dtec bundle (it has no manifest.json from dtec)",
            "choose a new or empty folder with -o, or --force to write into it",
        )
    new = {name: _sha256(text.encode("utf-8")) for name, text in files.items()}
    for name in sorted(new.keys() - {MANIFEST}):
        link = _link_above(folder, name)
        if link is not None:
            raise OutputError(link, "a link", "move it away: a bundle's folders are its own")
        if not force and os.path.lexists(folder / name) and _hash(folder / name) not in (listed.get(name), new[name]):
            why = "changed since dtec wrote it" if name in listed else "not written by dtec"
            raise OutputError(folder / name, why, "move it away, or --force to replace it")
    # A file of the old bundle that the new one lacks goes, unless the user changed it.
    return sorted(n for n in listed.keys() - new.keys() if _link_above(folder, n) is None and _hash(folder / n) == listed[n])


def _link_above(folder: Path, name: str) -> Path | None:
    """The first folder of a bundle path (`code/src/m.py`) that is a link: writes and removals stay inside."""
    parts = name.split("/")
    for depth in range(1, len(parts)):
        part = folder.joinpath(*parts[:depth])
        if part.is_symlink():
            return part
    return None


def write_bundle(files: Mapping[str, str], folder: Path, *, force: bool = False) -> None:
    """Write a bundle into `folder` (see plan_bundle), each file atomically, manifest.json last."""
    stale = plan_bundle(folder, files, force=force)
    make_folder(folder)
    if "job.sbatch" in files:
        make_folder(folder / "logs")  # Slurm opens the log files before the job starts
    for name in stale:
        try:
            (folder / name).unlink(missing_ok=True)
        except OSError as exc:
            raise failed(exc, folder / name) from None
        for parent in (folder / name).parents:  # the folders of old code left empty go too
            if parent == folder:
                break
            with contextlib.suppress(OSError):
                parent.rmdir()
    # Until the new manifest lands, the old one still vouches for every file written so far.
    for name in sorted(files, key=lambda n: n == MANIFEST):
        if "/" in name:
            make_folder((folder / name).parent)
        write_atomic(folder / name, files[name], 0o755 if name.endswith((".sh", ".sbatch")) else 0o644)


def finished_run(folder: Path) -> bool:
    """Tell whether `folder` holds a run that completed (its run/summary.json says so)."""
    try:
        summary = json.loads((folder / "run" / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and summary.get("status") == "completed"


def _manifest(folder: Path) -> dict[str, str] | None:
    """The sha256 of each file a dtec manifest in `folder` lists; None when there is no such manifest."""
    try:
        body = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entries = body.get("files") if isinstance(body, dict) and "dtec_version" in body else None
    if not isinstance(entries, dict):
        return None
    listed = {n: e["sha256"] for n, e in entries.items() if isinstance(e, dict) and isinstance(e.get("sha256"), str)}
    # The folder is not trusted: a listed name may only ever mean a file right in it.
    if len(listed) != len(entries) or any(not _plain(name) for name in listed):
        return None
    return listed


def _plain(name: str) -> bool:
    """A file right in the bundle, or below it (`code/src/m.py`): never outside, never the manifest."""
    parts = name.split("/")
    return name != MANIFEST and "\\" not in name and "\0" not in name and all(p not in ("", ".", "..") for p in parts)


def _hash(path: Path) -> str | None:
    """The sha256 of a regular file (not through a symlink), or None."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        return _sha256(path.read_bytes())
    except OSError:
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
