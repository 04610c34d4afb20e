"""Check the files a blueprint names against it, where they are at hand: data files and Python code.

Metadata only and fast (`dtec lint` runs this): `.npz` array headers, a CSV's header and first rows,
the user's modules parsed with `ast`, never imported. A blueprint is untrusted, so only files inside
the project are read (their column and array names appear in messages); a path outside it, or one
that is not on this computer (an absolute path on a cluster's file system), is reported as not
checked. What a file tells that the blueprint leaves out (the sample shape, the feature count) is
returned, so the cross-block checks can hold the model against it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dtec.diagnostics import Diagnostic, diag
from dtec.lang.blueprint import Blueprint
from dtec.lang.codefolders import BundledCode, CodeFolderError, add_folder
from dtec.lang.losses import loss_terms
from dtec.lang.schema import NORMALIZED_SOURCES as ARRAY_SOURCES
from dtec.suggest import did_you_mean

# Data set name → source values learned from its file; None: the file contradicts the blueprint.
Facts = dict[str, dict[str, Any] | None]


def check_files(bp: Blueprint, root: Path) -> tuple[list[Diagnostic], Facts, BundledCode]:
    """Check every data file, code folder and `python("module:name")` the blueprint names.

    Returns what the data files say, and the code folders read for the bundle.
    """
    checker = _FileChecker(bp, root)
    facts: Facts = {}
    # Every code folder of the blueprint is on the job's sys.path: each serves data and models.
    folders = [checker.code_folder((kind, name)) for kind in ("model", "data") for name in checker.blocks[kind]]
    folders.append(checker.code_folder(("train",)))
    for name, block in (bp.get("data") or {}).items():
        source = block.get("source") if isinstance(block, dict) else None
        if not isinstance(source, dict):
            continue
        if source.get("fn") in ("npz", "csv") and isinstance(source.get("path"), str):
            path = checker.locate(source["path"], ("data", name, "source", "path"), "DT302")
            if path is not None:
                check = checker.npz if source["fn"] == "npz" else checker.csv
                before = len(checker.found)
                learned = check(name, source, path)
                # After a reported contradiction the sizes are not known: the model is not held to them.
                facts[name] = learned if len(checker.found) == before else None
        elif source.get("fn") in ARRAY_SOURCES and isinstance(source.get("path"), str):
            from dtec.lang.arraychecks import check_array_source  # only for blueprints with such files

            before = len(checker.found)
            learned, _ = check_array_source(checker, name, block)
            facts[name] = learned if len(checker.found) == before else None
        elif source.get("fn") == "python" and isinstance(source.get("callable"), str):
            checker.code(source["callable"], ("data", name, "source", "callable"), folders)
    for name, block in checker.blocks["model"].items():
        arch = block.get("arch")
        if isinstance(arch, dict) and arch.get("fn") == "python" and isinstance(arch.get("class"), str):
            checker.code(arch["class"], ("model", name, "arch", "class"), folders)
    for index, term in loss_terms(bp.get("train", "loss")):
        if term.get("fn") == "python" and isinstance(term.get("callable"), str):
            at = ("train", "loss") if index is None else ("train", "loss", "terms", index)
            checker.code(term["callable"], (*at, "callable"), folders)
    objective = bp.get("train", "objective")
    if isinstance(objective, dict) and objective.get("fn") == "python" and isinstance(objective.get("callable"), str):
        checker.code(objective["callable"], ("train", "objective", "callable"), folders)
    action = objective.get("action") if isinstance(objective, dict) else None
    if isinstance(action, dict) and isinstance(action.get("callable"), str):
        checker.code(action["callable"], ("train", "objective", "action", "callable"), folders)
    return checker.found, {name: fact for name, fact in facts.items() if fact != {}}, checker.bundled


class _FileChecker:
    def __init__(self, bp: Blueprint, root: Path) -> None:
        self.bp, self.root = bp, root
        self.folder = bp.folder
        self.found: list[Diagnostic] = []
        self.blocks = {kind: {n: b for n, b in (bp.get(kind) or {}).items() if isinstance(b, dict)} for kind in ("model", "data")}
        self.bundled = BundledCode()

    def report(self, code: str, message: str, path: tuple, help: str | None = None) -> None:
        self.found.append(diag(code, message, self.bp.span(*path), help))

    def locate(self, written: str, at: tuple, missing_code: str, *, folder: bool = False, outside: str = "DT306") -> Path | None:
        """Return the file (or folder) at `written`, relative to the blueprint, if it may be read here.

        A relative path outside the project is `outside` (DT306: information; DT309: an error).
        """
        kind = "folder" if folder else "file"
        try:
            path = Path(os.path.realpath(self.folder / written))
            exists = path.is_dir() if folder else path.exists()
        except (OSError, ValueError):  # ValueError: a NUL in the path
            path, exists = Path(written), False
        if not exists:
            if os.path.isabs(written):  # perhaps on the file system of the machine the job runs on
                self.report("DT306", f"`{written}` is not on this computer: not checked", at,
                            f"`dtec check` where the {kind} is checks it")
            else:
                self.report(missing_code, f"{kind} `{written}` not found", at,
                            self.near(written) or f"the path is relative to the blueprint's folder: {self.folder / written}")
            return None
        if not path.is_relative_to(self.root):
            if outside == "DT306" or os.path.isabs(written):
                self.report("DT306", f"`{written}` is outside the project: not checked", at,
                            f"only files in the project `{self.root}` are read; `dtec check` reads it")
            else:
                self.report(outside, f"`{written}` is outside the project: it cannot be copied into the bundle", at,
                            f"move it into the project `{self.root}`, or make the project larger with $DTEC_PROJECT_ROOT")
            return None
        if not folder and not path.is_file():
            self.report("DT303", f"`{written}` is not a file", at)
            return None
        return path

    def near(self, written: str) -> str | None:
        """Return "did you mean" for a file of a similar name in the same folder."""
        parent = Path(written).parent
        try:
            folder = Path(os.path.realpath(self.folder / parent))
            names = [p.name for p in folder.iterdir()] if folder.is_relative_to(self.root) else []
        except (OSError, ValueError):
            return None
        match = did_you_mean(Path(written).name, names)
        return match and match.replace("`", f"`{parent.as_posix()}/", 1) if parent != Path(".") else match

    # ---- data files ------------------------------------------------------------------------
    def npz(self, name: str, source: dict, path: Path) -> dict[str, Any]:
        from dtec.lang.datafiles import DataFileError, npz_arrays  # only for blueprints with files

        at = ("data", name, "source")
        written, x, y = source["path"], source.get("x"), source.get("y")
        if not isinstance(x, str) or not isinstance(y, str):
            return {}
        try:
            held, arrays = npz_arrays(path, (x, y))
        except DataFileError as exc:
            self.report("DT303", f"`{written}`: {exc}", (*at, "path"))
            return {}
        for key, array in (("x", x), ("y", y)):
            if array not in arrays:
                choices = ", ".join(f"`{n}`" for n in held) or "none"
                self.report("DT304", f"`{written}` has no array `{array}` (the {'inputs' if key == 'x' else 'targets'}); it holds {choices}",
                            (*at, key), did_you_mean(array, held) or f"name one of its arrays: `{key} = \"...\"`")
        if x not in arrays or y not in arrays:
            return {}
        ax, ay = arrays[x], arrays[y]
        for key, array, header in (("x", x, ax), ("y", y, ay)):
            if not header.numeric:
                self.report("DT305", f"array `{array}` of `{written}` holds `{header.dtype}` values, not numbers", (*at, key),
                            "save it as a numeric array (float32 for inputs)")
                return {}
        if not ax.shape or not ay.shape:
            bad = x if not ax.shape else y
            self.report("DT305", f"array `{bad}` of `{written}` is a single value, not one row per sample", (*at, "path"))
            return {}
        if ax.shape[0] != ay.shape[0]:
            self.report("DT305", f"`{written}` has {ax.shape[0]} samples in `{x}` but {ay.shape[0]} in `{y}`", (*at, "y"),
                        "give both arrays one row per sample")
        sample, per_sample = list(ax.shape[1:]), list(ay.shape[1:])
        declared = source.get("shape")
        if isinstance(declared, list) and declared != sample:
            self.report("DT305", f"`shape` is {declared} but the samples of `{x}` in `{written}` have shape {sample}",
                        (*at, "shape"), f"set `shape = {sample}`")
        targets = source.get("targets")
        held_targets = per_sample[0] if per_sample else 1
        if isinstance(targets, int) and (len(per_sample) > 1 + len(sample[1:]) or held_targets != targets):
            self.report("DT305", f"`targets` is {targets} but `{y}` in `{written}` holds {per_sample or [1]} per sample",
                        (*at, "targets"), f"set `targets = {held_targets}`" if held_targets != targets else None)
        if isinstance(source.get("classes"), int) and per_sample not in ([], [1], sample[1:]):
            self.report("DT305", f"class targets are one number per sample (or per position), but `{y}` in `{written}` holds {per_sample}",
                        (*at, "y"), "save the class numbers, not one-hot rows")
        return {"shape": sample} if declared is None else {}

    def csv(self, name: str, source: dict, path: Path) -> dict[str, Any]:
        from dtec.lang.datafiles import DataFileError, csv_sample

        at = ("data", name, "source")
        written, target, features = source["path"], source.get("target"), source.get("features")
        try:
            header, rows = csv_sample(path)
        except DataFileError as exc:
            self.report("DT303", f"`{written}`: {exc}", (*at, "path"))
            return {}
        columns = ", ".join(f"`{c}`" for c in header)
        if isinstance(target, str) and target not in header:
            self.report("DT304", f"`{written}` has no column `{target}`; its columns are {columns}", (*at, "target"),
                        did_you_mean(target, header))
        if isinstance(features, list):
            selected = []
            for i, column in enumerate(features):
                if column not in header:
                    self.report("DT304", f"`{written}` has no column `{column}`; its columns are {columns}",
                                (*at, "features", i), did_you_mean(column, header))
                elif column == target:
                    self.report("DT114", f"`{column}` is the target column, so it cannot be a feature too", (*at, "features", i),
                                "remove it from `features`")
                else:
                    selected.append(column)
        else:
            selected = [c for c in header if c != target]
            if isinstance(features, int) and features != len(selected):
                self.report("DT305", f"`features` is {features} but `{written}` has {len(selected)} columns besides the target",
                            (*at, "features"), f"set `features = {len(selected)}`, or name the columns: `features = [\"a\", \"b\"]`")
        self.numeric(name, source, header, rows, selected)
        return {"features": len(selected)} if features is None else {}

    def numeric(self, name: str, source: dict, header: list[str], rows: list[list[str]], selected: list[str]) -> None:
        """Report the first cell of each used column, in the first rows, that is not a number."""
        from dtec.lang.datafiles import CSV_SAMPLE_ROWS, is_number

        written, target = source["path"], source.get("target")
        for column in [*selected, *([target] if target in header else [])]:
            index = header.index(column)
            for line, row in enumerate(rows, start=2):
                cell = row[index] if index < len(row) else ""
                if not is_number(cell):
                    where = "target" if column == target else "features"
                    help = (f"name the numeric columns: `features = [...]` (the first {CSV_SAMPLE_ROWS} rows were read)"
                            if where == "features" else "the target column must hold numbers (class numbers from 0 for classes)")
                    self.report("DT305", f"column `{column}` of `{written}` holds {cell!r} on line {line}, not a number",
                                ("data", name, "source", where), help)
                    break

    # ---- Python code -----------------------------------------------------------------------
    def code_folder(self, block: tuple[str, ...]) -> tuple[str, Path | None] | None:
        """Locate a block's code folder and read it for the bundle; return it as written and where it is here.

        None when the block names none; the place is None when the folder is not read here.
        """
        written = self.bp.get(*block, "path")
        if not isinstance(written, str):
            return None
        at = (*block, "path")
        folder = self.locate(written, at, "DT307", folder=True, outside="DT309")
        if folder is None:
            if os.path.isabs(written):
                self.bundled.folders[written] = written  # a folder on the machine the job runs on
            return (written, None)
        try:
            add_folder(self.bundled, written, folder, self.root)
        except CodeFolderError as exc:
            self.report("DT309", f"code folder `{written}`: {exc}", at, exc.help)
        return (written, folder)

    def code(self, spec: str, at: tuple, folders: list[tuple[str, Path | None] | None]) -> None:
        """Check that `module:name` is defined in one of the code folders, or installed here."""
        from dtec.lang.usercode import CodeNotFound, defines, module_file, module_names

        declared = list(dict.fromkeys(folder for folder in folders if folder is not None))
        if not declared or any(folder is None for _, folder in declared):
            # No code folder: the module can only be an installed one. One not readable here: reported.
            return
        module, _, obj = spec.partition(":")
        if not all(part.isidentifier() for part in [*module.split("."), obj]):
            self.report("DT307", f"`{spec}` is not `module:name`", at, 'write it as `"package.module:Name"`')
            return
        for written, folder in declared:
            found = None
            try:
                found = module_file(folder, module)
                if found is None:
                    continue
                defines(found, obj)
            except CodeNotFound as exc:
                shown = written if found is None else f"{written.rstrip('/')}/{found.relative_to(folder).as_posix()}"
                self.report("DT307", f"`{spec}`: {exc} in `{shown}`", at, did_you_mean(exc.missing, exc.choices) if exc.missing else None)
            return
        import importlib.util

        top = module.split(".")[0]
        try:
            installed = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            installed = False
        if installed:
            return  # an installed package: found, but not read
        where = " or ".join(f"`{written}`" for written, _ in declared)
        held = [entry for _, folder in declared for entry in module_names(folder)]
        self.report("DT307", f"`{spec}`: no module `{top}` in {where}, nor installed here", at,
                    did_you_mean(top, held) or f"put `{top}.py` in {where}")
