"""A local sweep worker's entry: its zygote is forked first, so that `import torch` runs beside the worker's own imports."""

import sys
from pathlib import Path

from dtec.warm import Zygote

if __name__ == "__main__":
    folder, number = Path(sys.argv[1]), int(sys.argv[2])
    zygote = Zygote(folder / "workers")  # before any thread: the worker's come with dtec.study
    from dtec.study import worker

    code = worker(folder, number, zygote)
    zygote.close()  # not on an error: a trial may still run, and the zygote ends with this process anyway
    sys.exit(code)
