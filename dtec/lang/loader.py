"""Read a blueprint and the files it imports, in order, reporting unreadable files and cycles."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dtec.diagnostics import Diagnostic, Related, diag
from dtec.source import Source, Span, read_source
from dtec.syntax import ast
from dtec.syntax.parser import parse


@dataclass(frozen=True)
class Program:
    """A blueprint with its imports resolved: every file's document, the main one first."""

    main: Source | None
    documents: tuple[ast.Document, ...]

    def items(self) -> list[ast.Block | ast.Attribute]:
        """Return the top-level blocks and attributes of all files, imports left out."""
        return [i for d in self.documents for i in d.items if not isinstance(i, ast.Import)]


def load(path: Path, text: str | None = None) -> tuple[Program, list[Diagnostic]]:
    """Load `path` (or `text` as if it were that file) and everything it imports."""
    diagnostics: list[Diagnostic] = []
    if text is None:
        source = read_source(path)
        if isinstance(source, str):
            help = "check the path" if source == "file not found" else "save it as UTF-8 text"
            at = Span(Source(str(path), ""), 0, 0)
            return Program(None, ()), [diag("DT001", f"cannot read `{path}`: {source}", at, help)]
    else:
        source = Source(str(path), text)
    documents: list[ast.Document] = []
    _load(source, documents, diagnostics, stack=[], seen=set())
    return Program(source, tuple(documents)), diagnostics


def _load(
    source: Source,
    documents: list[ast.Document],
    diagnostics: list[Diagnostic],
    stack: list[tuple[Path, Span | None]],
    seen: set[Path],
    via: Span | None = None,
) -> bool:
    document, found = parse(source)
    diagnostics.extend(found)
    if document is None:
        return False
    here = Path(source.path).resolve()
    seen.add(here)
    documents.append(document)
    stack.append((here, via))
    for item in document.items:
        if isinstance(item, ast.Import):
            _follow(item, Path(source.path), documents, diagnostics, stack, seen)
    stack.pop()
    return True


def _follow(
    item: ast.Import,
    importer: Path,
    documents: list[ast.Document],
    diagnostics: list[Diagnostic],
    stack: list[tuple[Path, Span | None]],
    seen: set[Path],
) -> None:
    target = (importer.parent / item.path).resolve()
    in_stack = [p for p, _ in stack]
    if target in in_stack:
        start = in_stack.index(target)
        chain = " → ".join(p.name for p in in_stack[start:]) + f" → {target.name}"
        related = [Related(s, "imported here") for _, s in stack[start + 1 :] if s is not None]
        diagnostics.append(
            diag("DT011", f"import cycle: {chain}", item.span, "remove one of the imports", related)
        )
        return
    if target in seen:
        return  # a diamond: the file is already in, once is enough
    source = read_source(Path(os.path.normpath(importer.parent / item.path)))
    if isinstance(source, str):
        diagnostics.append(
            diag(
                "DT010",
                f"cannot import `{item.path}`: {source}",
                item.path_span,
                f"the path is relative to the importing file: {os.path.normpath(importer.parent / item.path)}",
            )
        )
        return
    if not _load(source, documents, diagnostics, stack, seen, via=item.span):
        diagnostics.append(
            diag("DT010", f"`{item.path}` does not parse", item.path_span, "fix the syntax error reported in that file")
        )
