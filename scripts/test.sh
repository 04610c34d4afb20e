#!/usr/bin/env bash
# The one test command: install what is needed, start the local Slurm, run the whole test suite.
#
#   scripts/test.sh                  everything (what CI runs, through .ci/run, with CI=true)
#   scripts/test.sh -k slurm -x      extra arguments go to pytest
#
# Which dtec is tested: the INSTALLED one. install-deps.sh installs this checkout as a wheel
# (non-editable), and pytest runs so that the checkout's dtec/ cannot shadow it:
#   - `python -P` keeps the current folder (the repository root) off sys.path, and
#   - `--import-mode=importlib` imports the test files without putting tests/ or the repository
#     root on sys.path (so tests/ must stay free of __init__.py-based imports: test files share
#     code through fixtures in tests/conftest.py or modules in tests/helpers/, which pyproject's
#     `pythonpath` puts on sys.path, not by importing each other).
# pytest still runs from the repository root, so pyproject.toml's settings (testpaths, markers,
# --strict-markers) and tests/conftest.py apply, and tests find blueprints/ and other fixtures
# through the `repo_root` fixture. DTEC_TEST_INSTALLED=1 makes conftest.py stop the run if dtec
# comes from the checkout anyway. This catches what an editable or in-tree run hides: data files
# missing from the wheel, modules that only exist locally, a broken entry point.
#
# Environment: CI=true makes a missing Slurm or an empty test run an error; DTEC_SKIP_INSTALL=1
# skips install-deps.sh (the installed dtec is then whatever was installed last);
# DTEC_TEST_TIMEOUT (default 80m) bounds the pytest run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
ci=false
[[ ${CI:-} == true ]] && ci=true

if [[ ${DTEC_SKIP_INSTALL:-} != 1 ]]; then
    bash scripts/install-deps.sh
fi

if ! bash scripts/slurm-local.sh start; then
    if $ci; then
        echo "test.sh: the local Slurm did not start (see above)" >&2
        exit 1
    fi
    echo "test.sh: the local Slurm did not start; Slurm tests will be skipped" >&2
fi

PYTHON=${PYTHON:-$(command -v python || command -v python3)}
export DTEC_TEST_INSTALLED=1
rc=0
timeout -k 60 "${DTEC_TEST_TIMEOUT:-80m}" \
    "$PYTHON" -P -m pytest --import-mode=importlib -p no:cacheprovider -q --durations=15 "$@" ||
    rc=$?

case $rc in
    0) ;;
    5)
        echo "test.sh: pytest collected no tests (exit 5)" >&2
        if $ci; then echo "test.sh: that is a failure in CI" >&2; fi
        ;;
    124 | 137) echo "test.sh: pytest ran past ${DTEC_TEST_TIMEOUT:-80m} and was stopped" >&2 ;;
    *) echo "test.sh: pytest exited with $rc" >&2 ;;
esac
exit "$rc"
