"""Print a document in the canonical style: 2-space indent, aligned `=` runs, 100 columns."""

from __future__ import annotations

from dtec.format.comments import Container, Entry, Node, Notes
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
        pads, forced = self._align(entries, level, comma)
        indent = INDENT * level
        lines: list[str] = []
        for i, entry in enumerate(entries):
            if i and (entry.blank or (kind == "top" and _apart(entries, i))):
                lines.append("")
            if entry.node is None:
                lines.append(indent + entry.comment)  # type: ignore[operator]
                continue
            out = self.item(entry.node, level, pads.get(i, 0), comma, i in forced)
            if entry.comment is not None:
                out[-1] += entry.comment  # it carries the author's gap
            lines += out
        return lines

    def _align(
        self, entries: list[Entry], level: int, comma: bool
    ) -> tuple[dict[int, int], set[int]]:
        """Pad the keys of each run of one-line attributes; explode those padding pushes too far."""
        attrs = {i: e.node for i, e in enumerate(entries) if isinstance(e.node, ast.Attribute)}
        forced: set[int] = set()
        while True:
            runs: list[list[int]] = [[]]
            for i, entry in enumerate(entries):
                attr = attrs.get(i)
                single = (
                    attr is not None and i not in forced and self._one_line(attr, level, 0, comma)
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
                i for i, pad in pads.items() if not self._one_line(attrs[i], level, pad, comma)
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
        head = (
            f"{indent}{block.kind} {quote(block.label)} {{"
            if block.label is not None
            else f"{indent}{block.kind} {{"
        )
        return self._exploded(block, head, indent + "}", level, "body")

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
        if id(node) in self.notes.commented:
            return None
        parts = [self._flat_arg(n) for n in self.notes.shape(node).entries]
        if isinstance(node, ast.ListExpr):
            return "[" + ", ".join(parts) + "]"  # type: ignore[arg-type]
        if isinstance(node, ast.MapExpr):
            return "{ " + ", ".join(parts) + " }" if parts else "{}"  # type: ignore[arg-type]
        return f"{node.name}(" + ", ".join(parts) + ")"  # type: ignore[arg-type]

    def _flat_arg(self, entry: Entry) -> str:
        node = entry.node
        if isinstance(node, ast.Attribute):
            return f"{node.key} = {self.flat(node.value)}"
        return self.flat(node)  # type: ignore[arg-type, return-value]


def _apart(entries: list[Entry], i: int) -> bool:
    """Tell whether a top-level entry starts a new group next to a block (one blank line apart)."""
    prev = entries[i - 1].node
    if prev is None:
        return False
    if isinstance(prev, ast.Block):
        return True
    following = next((e.node for e in entries[i:] if e.node is not None), None)
    return isinstance(following, ast.Block)
