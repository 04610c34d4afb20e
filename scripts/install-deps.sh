#!/usr/bin/env bash
# Install what dtec and its tests need, on a fresh Debian 12 machine or one that has it all already
# (then it takes seconds): Slurm + munge + shellcheck + Chromium (the report test opens a page in
# it) + PostgreSQL (a sweep's database test starts a server of its own) from Debian, then with pip
# torch, DeepSpeed and dtec itself with its `test`, `bench`, `data`, `sweep`, `sweep-db`, `report`
# and `track` extras (the benchmark report test draws plots: no skip in CI), and with npm the
# TextMate engine tests/test_textmate.py colours blueprints with (tests/textmate, from its lock file).
#
# Order matters: torch==2.13.0 first. That CPU build is served from this machine's disk; anything
# that pulls in torch before it (deepspeed, dtec[torch]) would download a CUDA build of several GB.
#
# dtec is installed from this checkout as a wheel (non-editable), the way a user gets it, and the
# tests run against that installed copy (see scripts/test.sh). Rerun this after changing the code.
#
# Environment: PYTHON (default: python, else python3) picks the interpreter.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { printf 'install-deps: %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------------
apt_commands=(sbatch srun sinfo squeue scontrol scancel slurmctld slurmd munge unmunge munged
    shellcheck chromium node npm)
missing=()
for c in "${apt_commands[@]}"; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done
# Debian's postgresql keeps its programs off the PATH, in /usr/lib/postgresql/<version>/bin.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgres)
if ((${#missing[@]})); then
    log "missing ${missing[*]}: installing slurm-wlm munge shellcheck chromium postgresql nodejs npm with apt-get"
    sudo=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || { log "not root and no sudo: cannot apt-get install" >&2; exit 1; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends slurm-wlm munge shellcheck chromium postgresql nodejs npm
else
    log "slurm, munge, shellcheck, chromium, postgresql and node are installed"
fi

# --- Python packages -------------------------------------------------------------------------
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
pip=("$PYTHON" -m pip install --progress-bar off --disable-pip-version-check --root-user-action=ignore)

"${pip[@]}" -q 'torch==2.13.0'
"${pip[@]}" -q 'deepspeed>=0.19,<0.20'
# dtec goes out first: a pip that keeps an installed dtec of the same version would test old code.
"$PYTHON" -m pip uninstall -q -y --root-user-action=ignore dtec >/dev/null 2>&1 || true
"${pip[@]}" -q '.[test,bench,data,sweep,sweep-db,report,track,lsp]'

# From / so that the checkout's dtec/ cannot shadow the installed one.
log "$(cd / && "$PYTHON" -c 'import dtec, torch; print(f"dtec {dtec.__version__} at {dtec.__file__}; torch {torch.__version__}")')"

# --- npm packages ----------------------------------------------------------------------------
npm ci --prefix tests/textmate --no-audit --no-fund --loglevel=error
