"""The typed blueprint: plain values in a nested dict, with the span of every value by its path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from dtec.source import Source, Span

Path = tuple[str | int, ...]


@dataclass
class Blueprint:
    """A checked blueprint.

    `values` holds one dict per block kind: singleton kinds (`train`) map to their attributes,
    labelled kinds (`data`, `model`, `target`) map label → attributes. Calls become
    `{"fn": name, **arguments}`, durations seconds, sizes bytes, references the label they name.
    """

    source: Source | None
    values: dict[str, Any] = field(default_factory=dict)
    spans: dict[Path, Span] = field(default_factory=dict)

    def get(self, *path: str | int, default: Any = None) -> Any:
        """Return the value at `path`, or `default` when any step is missing."""
        node: Any = self.values
        for step in path:
            try:
                node = node[step]
            except (KeyError, IndexError, TypeError):
                return default
        return node

    def span(self, *path: str | int) -> Span | None:
        """Return the span of the value at `path`, or of its closest enclosing part."""
        for end in range(len(path), 0, -1):
            found = self.spans.get(path[:end])
            if found is not None:
                return found
        return None

    @property
    def folder(self) -> FilePath:
        """Return the folder paths in the blueprint are relative to: the main file's."""
        return FilePath(self.source.path).parent if self.source is not None else FilePath(".")

    @property
    def name(self) -> str:
        """Return the twin's name."""
        return self.get("twin", "name", default="twin")
