"""Print a document in the canonical style: 2-space indent, aligned `=` runs, 100 columns."""

from __future__ import annotations

from dtec.format.comments import Container, Entry, Node, Notes, children
from dtec.syntax import ast

WIDTH = 100
INDENT = "  "
COMMENT_GAP = "  "
_ATOMS = (ast.Str, ast.Number, ast.Bool, ast.Symbol, ast.Ref)
_OPENERS = {ast.ListExpr: ("[", "]"), ast.MapExpr: ("{", "}")}


def print_document(document: ast.Document) -> str:
    """Return the canonical text of a parsed document."""
    lines = _Printer(Notes(document)).vertical(document, 0, "top")
    return "\n".join(lines) + "\n" if lines else ""


def quote(value: str) -> str:
    """Write a string literal with the canonical escapes."""
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    )
    return f'"{escaped}"'


class _Printer:
    def __init__(self, notes: Notes) -> None:
        self.notes = notes
        self._flat: dict[int, str | None] = {}

    # ---- vertical lists: the document, block bodies, exploded maps, lists and calls ----------

    def vertical(self, container: Container, level: int, kind: str) -> list[str]:
        entries = self.notes.shape(container).entries
        comma = kind in {"list", "args"}
        rows = _rows(entries)
        shared = {i for row in rows if len(row) > 1 for i in row}
        pads, forced = self._align(entries, level, comma, shared)
        indent = INDENT * level
        lines: list[str] = []
        for row in rows:
            i, entry = row.start, entries[row.start]
            if i and (entry.blank or (kind == "top" and _apart(entries, i))):
                lines.append("")
            if entry.node is None:
                lines.append(indent + entry.comment)  # type: ignore[operator]
                continue
            if entry.pin is None:
                out = self.item(entry.node, level, pads.get(i, 0), comma, i in forced)
            else:
                parts = [
                    self.one_line(entries[j].node, pads.get(j, 0))  # type: ignore[arg-type]
                    for j in row
                ]
                out = [indent + ", ".join(parts) + "," * comma]
                entry = entries[row[-1]]
            if entry.comment is not None:
                out[-1] += entry.comment  # it carries the author's gap
            lines += out
        return lines

    def _align(
        self, entries: list[Entry], level: int, comma: bool, shared: set[int]
    ) -> tuple[dict[int, int], set[int]]:
        """Pad the keys of each run of one-line attributes; explode those padding pushes too far.

        An attribute alone on a suppressed line is padded but never exploded; one that shares its
        line with other items is neither.
        """
        attrs = {i: e.node for i, e in enumerate(entries) if isinstance(e.node, ast.Attribute)}
        pinned = {i for i in attrs if entries[i].pin is not None}
        forced: set[int] = set()
        while True:
            runs: list[list[int]] = [[]]
            for i, entry in enumerate(entries):
                attr = attrs.get(i)
                if i in pinned:
                    single = i not in shared
                else:
                    single = (
                        attr is not None
                        and i not in forced
                        and self._one_line(attr, level, 0, comma)
                    )
                if not single or entry.blank:
                    runs.append([])
                if single:
                    runs[-1].append(i)
            pads: dict[int, int] = {}
            for run in runs:
                # One maximum per run: taking it per member made long runs quadratic.
                pad = max((len(attrs[i].key) for i in run), default=0)
                pads.update(dict.fromkeys(run, pad))
            overflow = {
                i
                for i, pad in pads.items()
                if i not in pinned and not self._one_line(attrs[i], level, pad, comma)
            }
            if not overflow:
                return pads, forced
            forced |= overflow

    def _one_line(self, attr: ast.Attribute, level: int, pad: int, comma: bool) -> bool:
        if isinstance(attr.value, _ATOMS):
            return True
        flat = self.flat(attr.value)
        width = len(INDENT) * level + max(pad, len(attr.key)) + 3 + comma
        return flat is not None and width + len(flat) <= WIDTH

    # ---- items -------------------------------------------------------------------------------

    def item(self, node: Node, level: int, pad: int, comma: bool, force: bool) -> list[str]:
        indent = INDENT * level
        if isinstance(node, ast.Block):
            return self.block(node, level)
        if isinstance(node, ast.Import):
            return [f"{indent}import {quote(node.path)}"]
        if isinstance(node, ast.Attribute):
            head = f"{indent}{node.key.ljust(pad)} = "
            lines = self.expr(node.value, level, len(head) + comma, force)
            lines[0] = head + lines[0]
        else:
            lines = self.expr(node, level, len(indent) + comma, force)
            lines[0] = indent + lines[0]
        if comma:
            lines[-1] += ","
        return lines

    def block(self, block: ast.Block, level: int) -> list[str]:
        indent = INDENT * level
        return self._exploded(block, f"{indent}{_head(block)} {{", indent + "}", level, "body")

    def one_line(self, node: Node, pad: int = 0) -> str:
        """Return an item on one line, however wide (an argument, an item on a suppressed line)."""
        if isinstance(node, ast.Attribute):
            return f"{node.key.ljust(pad)} = {self.flat(node.value)}"
        if isinstance(node, ast.Import):
            return f"import {quote(node.path)}"
        if isinstance(node, ast.Block):
            members = ", ".join(self.one_line(n) for n in node.body)
            return f"{_head(node)} {{ {members} }}" if members else f"{_head(node)} {{}}"
        return self.flat(node)  # type: ignore[return-value]

    # ---- expressions ---------------------------------------------------------------------------

    def expr(self, node: ast.Expr, level: int, used: int, force: bool = False) -> list[str]:
        """Return an expression's lines; the first continues a line with `used` columns taken."""
        flat = self.flat(node)
        if isinstance(node, _ATOMS) or (
            flat is not None and not force and used + len(flat) <= WIDTH
        ):
            return [flat]  # type: ignore[list-item]
        indent = INDENT * level
        if isinstance(node, ast.Call):
            return self._exploded(node, f"{node.name}(", indent + ")", level, "args")
        opener, closer = _OPENERS[type(node)]
        kind = "list" if isinstance(node, ast.ListExpr) else "map"
        return self._exploded(node, opener, indent + closer, level, kind)

    def _exploded(self, node: Container, head: str, tail: str, level: int, kind: str) -> list[str]:
        shape = self.notes.shape(node)
        if not shape.entries and shape.opening is None:
            return [head + tail.strip()]
        first = head + (COMMENT_GAP + shape.opening if shape.opening is not None else "")
        return [first, *self.vertical(node, level + 1, kind), tail]

    def flat(self, node: ast.Expr) -> str | None:
        """Return an expression on one line, or None when it holds a comment."""
        key = id(node)
        if key not in self._flat:
            self._flat[key] = self._flatten(node)
        return self._flat[key]

    def _flatten(self, node: ast.Expr) -> str | None:
        if isinstance(node, ast.Str):
            return quote(node.value)
        if isinstance(node, ast.Number):
            return node.text
        if isinstance(node, ast.Bool):
            return "true" if node.value else "false"
        if isinstance(node, ast.Symbol):
            return node.name
        if isinstance(node, ast.Ref):
            return node.dotted
        if id(node) in self.notes.multiline:
            return None
        parts = [self.one_line(n) for n in children(node)]
        if isinstance(node, ast.ListExpr):
            return "[" + ", ".join(parts) + "]"  # type: ignore[arg-type]
        if isinstance(node, ast.MapExpr):
            return "{ " + ", ".join(parts) + " }" if parts else "{}"  # type: ignore[arg-type]
        return f"{node.name}(" + ", ".join(parts) + ")"  # type: ignore[arg-type]


def _rows(entries: list[Entry]) -> list[range]:
    """Return the entries of each output line: one each, but a suppressed line's items share one."""
    rows: list[range] = []
    for i, entry in enumerate(entries):
        if i and entry.pin is not None and entry.pin == entries[i - 1].pin:
            rows[-1] = range(rows[-1].start, i + 1)
        else:
            rows.append(range(i, i + 1))
    return rows


def _head(block: ast.Block) -> str:
    """Return a block's `kind "label"` or `kind`, as written before its `{`."""
    return f"{block.kind} {quote(block.label)}" if block.label is not None else block.kind


def _apart(entries: list[Entry], i: int) -> bool:
    """Tell whether a top-level entry starts a new group next to a block (one blank line apart)."""
    prev = entries[i - 1].node
    if prev is None:
        return False
    if isinstance(prev, ast.Block):
        return True
    following = next((e.node for e in entries[i:] if e.node is not None), None)
    return isinstance(following, ast.Block)
