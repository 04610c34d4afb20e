"""Read a blueprint and the files it imports, in order, reporting unreadable files and cycles.

Imports stay inside the project: a blueprint is untrusted input (linted in CI on pull requests), so
`import "../.env"` must neither read nor echo a file outside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from dtec.diagnostics import Diagnostic, Related, diag
from dtec.source import Source, Span, read_source
from dtec.syntax import ast
from dtec.syntax.parser import parse

ROOT_VARIABLE = "DTEC_PROJECT_ROOT"


@dataclass(frozen=True)
class Program:
    """A blueprint with its imports resolved: every file's document, the main one first."""

    main: Source | None
    documents: tuple[ast.Document, ...]

    def items(self) -> list[ast.Block | ast.Attribute]:
        """Return the top-level blocks and attributes of all files, imports left out."""
        return [i for d in self.documents for i in d.items if not isinstance(i, ast.Import)]


# Reads an imported file (its resolved path, the name diagnostics show); an editor passes one that
# returns its unsaved buffers.
Reader = Callable[[Path, str], "Source | str"]


def load(
    path: Path, text: str | None = None, environ: Mapping[str, str] | None = None, read: Reader = read_source
) -> tuple[Program, list[Diagnostic]]:
    """Load `path` (or `text` as if it were that file) and everything it imports, inside the project.

    A syntax error in the main file keeps its top-level items that parse (`Document.recovered`).
    """
    if text is None:
        source = read_source(path)
        if isinstance(source, str):
            help = "check the path" if source == "file not found" else "save it as UTF-8 text"
            at = Span(Source(str(path), ""), 0, 0)  # shown as the file alone, with no excerpt
            return Program(None, ()), [diag("DT001", f"cannot read `{path}`: {source}", at, help)]
    else:
        source = Source(str(path), text)
    loader = _Loader(path, os.environ if environ is None else environ, read)
    error = loader.load(source)
    if error is not None:
        loader.diagnostics.append(error)
    return Program(source, tuple(loader.documents)), loader.diagnostics


def project_root(main: Path, environ: Mapping[str, str]) -> Path:
    """Return the folder imports must stay in, symlinks resolved.

    `$DTEC_PROJECT_ROOT` when set; else the repository of the main blueprint (the nearest folder
    above it holding `.git`); else the main blueprint's own folder.
    """
    configured = environ.get(ROOT_VARIABLE)
    if configured:
        return Path(os.path.realpath(configured))
    folder = Path(os.path.abspath(main)).parent
    repository = next((f for f in (folder, *folder.parents) if os.path.lexists(f / ".git")), folder)
    return Path(os.path.realpath(repository))


def _real(path: Path) -> Path | str:
    """Return `path` with symlinks resolved, or why it cannot be (a sentence for a diagnostic)."""
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        return f"cannot resolve the path: {getattr(exc, 'strerror', None) or exc}"


@dataclass
class _Loader:
    """One load: the documents and diagnostics so far, the import chain, and the files already in."""

    main: Path
    environ: Mapping[str, str]
    read: Reader
    documents: list[ast.Document] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    stack: list[tuple[Path, Span | None]] = field(default_factory=list)
    seen: set[Path] = field(default_factory=set)

    @cached_property
    def root(self) -> Path:
        # Found on the first import only: most blueprints import nothing.
        return project_root(self.main, self.environ)

    def load(self, source: Source, via: Span | None = None) -> Diagnostic | None:
        """Parse `source` and follow its imports; return its syntax error instead, if it has one."""
        document, found = parse(source, recover=via is None)
        if document is None:
            return found[0]
        here = _real(Path(source.path))
        here = here if isinstance(here, Path) else Path(source.path)
        self.diagnostics.extend(found)
        self.seen.add(here)
        self.documents.append(document)
        self.stack.append((here, via))
        for item in document.items:
            if isinstance(item, ast.Import):
                self.follow(item, Path(source.path))
        self.stack.pop()
        return None

    def follow(self, item: ast.Import, importer: Path) -> None:
        written = Path(os.path.normpath(importer.parent / item.path))
        target = _real(written)
        if isinstance(target, str):
            return self.refuse(item, target, f"the path is relative to the importing file: {written}")
        if not target.is_relative_to(self.root):
            return self.refuse(
                item,
                f"`{target}` is outside the project `{self.root}`",
                f"imports stay inside the project: the main blueprint's repository, or ${ROOT_VARIABLE}",
            )
        if target.suffix != ".twin":
            return self.refuse(item, "only `.twin` files can be imported", f"the path resolves to {target}")
        chain = [p for p, _ in self.stack]
        if target in chain:
            start = chain.index(target)
            names = " → ".join(p.name for p in chain[start:]) + f" → {target.name}"
            related = [Related(s, "imported here") for _, s in self.stack[start + 1 :] if s is not None]
            self.diagnostics.append(diag("DT011", f"import cycle: {names}", item.span, "remove one of the imports", related))
            return None
        if target in self.seen:
            return None  # a diamond: the file is already in, once is enough
        source = self.read(target, str(written))
        if isinstance(source, str):
            return self.refuse(item, source, f"the path is relative to the importing file: {written}")
        error = self.load(source, via=item.span)
        if error is not None:
            # Only the position: the file did not parse as a blueprint, so none of its text is shown.
            line, column = error.span.start_pos  # type: ignore[union-attr]
            return self.refuse(
                item, f"it does not parse (syntax error at {line}:{column})", f"run `dtec lint {written}` to see the error"
            )
        return None

    def refuse(self, item: ast.Import, reason: str, help: str) -> None:
        self.diagnostics.append(diag("DT010", f"cannot import `{item.path}`: {reason}", item.path_span, help))
