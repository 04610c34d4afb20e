"""tests/train/quickstart.twin compiled with `--set` values (sets=), as a user would vary it.

A plain module on sys.path through pyproject.toml's `pythonpath` (see train_runs.py).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from dtec.compiler import compile_blueprint

TRAIN_FIXTURES = Path(__file__).resolve().parent.parent / "train"
# Relative paths in it resolve against the folder the test puts it in.
BLUEPRINT = (TRAIN_FIXTURES / "quickstart.twin").read_text()


@functools.cache
def render_folder() -> Path:
    """A project for scripts that are only rendered: the test's user code in `code`, no data."""
    folder = Path(tempfile.mkdtemp(prefix="dtec-render-"))
    atexit.register(shutil.rmtree, folder, True)
    shutil.copytree(TRAIN_FIXTURES / "usercode", folder / "code")
    return folder


def compiled(*sets: str, folder: Path | None = None):
    """The bundle of tests/train/quickstart.twin with `sets`, as if it lay in `folder`."""
    folder = folder or render_folder()
    bundle, diagnostics = compile_blueprint(folder / "quickstart.twin", "local", text=BLUEPRINT,
                                            environ={}, sets=sets)
    assert bundle is not None, [(d.code, d.message) for d in diagnostics]
    return bundle


def script(*sets: str) -> str:
    return compiled(*sets).files["train.py"]


def write_bundle(folder: Path, *sets: str) -> Path:
    """Compile the blueprint with `sets` into `folder/train.py` (the test's user code in
    `folder/code`)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(TRAIN_FIXTURES / "usercode", folder / "code", dirs_exist_ok=True)
    for name, text in compiled(*sets, folder=folder).files.items():  # the code copies too
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder / "train.py"
