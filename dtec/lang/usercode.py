"""Find `module:name` in a code folder without importing it: the module's file, parsed with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path


class CodeNotFound(Exception):
    """`module:name` cannot be found; the message says what is missing, `choices` what is there."""

    def __init__(self, message: str, missing: str = "", choices: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing, self.choices = missing, choices


def module_file(folder: Path, module: str) -> Path | None:
    """Return the file of `module` (`a.b`: `a/b.py` or `a/b/__init__.py`) in `folder`.

    None when its top-level package is not there (it may be installed instead); CodeNotFound when
    the package is there but a submodule is not.
    """
    parts = module.split(".")
    base = folder
    for depth, part in enumerate(parts):
        if depth < len(parts) - 1:
            if (base / part).is_dir():
                base = base / part
                continue
            if (base / f"{part}.py").is_file():
                raise CodeNotFound(f"`{'.'.join(parts[: depth + 1])}` is a module, not a package")
        if depth == len(parts) - 1:
            for candidate in (base / f"{part}.py", base / part / "__init__.py"):
                if candidate.is_file():
                    return candidate
        if depth == 0:
            return None
        raise _missing(f"no module `{'.'.join(parts[: depth + 1])}`", part, base)
    return None


def _missing(message: str, name: str, folder: Path) -> CodeNotFound:
    return CodeNotFound(message, name, tuple(module_names(folder)))


def module_names(folder: Path) -> list[str]:
    """Return the names of the modules and packages in `folder`."""
    try:
        return sorted(p.stem if p.suffix == ".py" else p.name for p in folder.iterdir() if p.suffix == ".py" or p.is_dir())
    except OSError:
        return []


def defines(path: Path, name: str) -> None:
    """Raise CodeNotFound unless the module file at `path` defines `name` at its top level.

    Names bound by assignments, definitions and imports count, also inside top-level `if`, `try`
    and `with`; a module with `from x import *` or a module `__getattr__` may define anything.
    """
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise CodeNotFound(f"line {exc.lineno} does not parse ({exc.msg})") from None
    except (OSError, ValueError) as exc:  # ValueError: NUL bytes
        raise CodeNotFound(f"cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    names = _top_level_names(tree.body)
    if name in names or "*" in names or "__getattr__" in names:
        return
    raise CodeNotFound(f"no `{name}` defined at the top level", name, tuple(sorted(names)))


def _top_level_names(body: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            for part in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, part, []):
                    names |= _top_level_names(child.body if isinstance(child, ast.ExceptHandler) else [child])
    return names
