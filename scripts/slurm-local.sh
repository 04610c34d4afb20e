#!/usr/bin/env bash
# A one-node Slurm cluster on this host, for dtec's tests and for trying jobs by hand.
#
#   scripts/slurm-local.sh start    set up munge + /etc/slurm/slurm.conf, start slurmctld and
#                                   slurmd, wait until the node is idle (idempotent: a running,
#                                   healthy cluster is left alone; a half-started one is finished)
#   scripts/slurm-local.sh stop     stop slurmd, slurmctld and munged
#   scripts/slurm-local.sh status   print what runs; exit 0 only when the node takes jobs
#
# start and stop need root (the daemons run as root, SlurmUser=root). Every file Slurm writes
# (state, spool, pid files, logs) lives under one folder, $DTEC_SLURM_DIR (/var/lib/dtec-slurm).
# All traffic stays on 127.0.0.1. Accounting is off: follow jobs with `sbatch --wait`, squeue,
# `scontrol show job` (kept MinJobAge=300 s after the end) and the job's output file.
set -euo pipefail

BASE=${DTEC_SLURM_DIR:-/var/lib/dtec-slurm}
WAIT_S=${DTEC_SLURM_WAIT:-60}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
MUNGE_PID=$MUNGE_RUN/munged.pid
MUNGE_LOG=/var/log/munge/munged.log
CTLD_PID=$BASE/run/slurmctld.pid
SLURMD_PID=$BASE/run/slurmd.pid
CTLD_LOG=$BASE/log/slurmctld.log
SLURMD_LOG=$BASE/log/slurmd.log
HOST=$(hostname -s)
# Node states in which the node takes (or is running) jobs. A suffix (`idle*` = not responding,
# `idle~` = powered off, ...) means it does not, so the match is exact.
READY_RE='^(idle|mix|mixed|alloc|allocated|comp|completing)$'

say() { printf 'slurm-local: %s\n' "$*"; }
warn() { printf 'slurm-local: %s\n' "$*" >&2; }

need_root() {
    if [[ $EUID -ne 0 ]]; then
        warn "'$1' needs root (the daemons run as root and the config lives in $CONF_DIR)"
        exit 1
    fi
}

need_commands() {
    local missing=() c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    if ((${#missing[@]})); then
        warn "missing commands: ${missing[*]} (run scripts/install-deps.sh)"
        exit 1
    fi
}

# alive PID: a live process (a zombie, a daemon just killed and not yet reaped, is not).
alive() {
    local state
    [[ $1 =~ ^[0-9]+$ ]] && kill -0 "$1" 2>/dev/null || return 1
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# daemon_pids NAME PIDFILE: live pids of the daemon, from its pid file or, after a start that left
# no pid file (or one from another config), from the process table by exact name.
daemon_pids() {
    local name=$1 file=$2 pid
    if [[ -r $file ]]; then
        pid=$(cat "$file" 2>/dev/null) || pid=
        if alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; then
            echo "$pid"
            return 0
        fi
    fi
    for pid in $(pgrep -x "$name" || true); do
        if alive "$pid"; then echo "$pid"; fi
    done
}

running() { [[ -n $(daemon_pids "$1" "$2") ]]; }

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

node_state() { timeout 15 sinfo -h -n "$HOST" -o %t 2>/dev/null | head -n 1 || true; }

node_ready() { [[ $(node_state) =~ $READY_RE ]]; }

show_logs() {
    local f
    warn "logs: $CTLD_LOG $SLURMD_LOG $MUNGE_LOG (config: $CONF)"
    for f in "$MUNGE_LOG" "$CTLD_LOG" "$SLURMD_LOG"; do
        if [[ -r $f ]]; then
            printf '\n===== last lines of %s =====\n' "$f" >&2
            tail -n 25 "$f" >&2
        fi
    done
}

fail() {
    warn "$*"
    show_logs
    exit 1
}

# stop_daemon NAME PIDFILE: TERM, wait up to 15 s, then KILL.
stop_daemon() {
    local name=$1 file=$2 pids i
    pids=$(daemon_pids "$name" "$file")
    if [[ -z $pids ]]; then
        rm -f "$file"
        return 0
    fi
    say "stopping $name (pid $(echo "$pids" | tr '\n' ' '| sed 's/ $//'))"
    # shellcheck disable=SC2086 # one pid per word
    kill $pids 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        running "$name" "$file" || break
        sleep 0.5
    done
    pids=$(daemon_pids "$name" "$file")
    if [[ -n $pids ]]; then
        warn "$name did not stop in 15 s: killing it"
        # shellcheck disable=SC2086
        kill -9 $pids 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$file"
}

setup_munge() {
    install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    if [[ ! -s $MUNGE_KEY ]]; then
        say "creating $MUNGE_KEY"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --force --keyfile="$MUNGE_KEY"
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
}

start_munge() {
    local i
    if munge_ok; then
        return 0
    fi
    # A munged that is alive but does not answer is stuck: replace it.
    stop_daemon munged "$MUNGE_PID"
    say "starting munged"
    runuser -u munge -- munged --force </dev/null >>"$BASE/log/munged.out" 2>&1 ||
        fail "munged did not start"
    for ((i = 0; i < 20; i++)); do
        munge_ok && return 0
        sleep 0.5
    done
    fail "munge -n | unmunge does not succeed after starting munged"
}

# The config, from this host's facts. Printed, not written, so that start can tell whether it
# changed (and restart the daemons only then).
render_conf() {
    local cpus mem
    cpus=$(nproc)
    mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9][0-9]*\).*/\1/p' | head -n 1)
    [[ $mem =~ ^[0-9]+$ ]] || mem=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
    # A bit under the real total, or slurmd reports less than configured and the node drains.
    mem=$((mem * 9 / 10))
    cat <<EOF
# Written by dtec's scripts/slurm-local.sh for a one-node cluster on this host; it is
# rewritten on every start.
ClusterName=dtec
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: processes are tracked through /proc, tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# The node is what this file says, whatever slurmd detects (e.g. hyperthreads), so that
# --ntasks-per-node=<nproc> always fits and the node never drains on a topology mismatch.
SlurmdParameters=config_overrides
MinJobAge=300
MailProg=/bin/true
InactiveLimit=0
KillWait=10
SlurmdTimeout=300
SlurmctldTimeout=120
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

# Writes the config; returns 0 when it changed.
write_conf() {
    local new
    new=$(render_conf)
    install -d -m 0755 "$CONF_DIR"
    if [[ -f $CONF ]] && [[ $(<"$CONF") == "$new" ]]; then
        return 1
    fi
    say "writing $CONF"
    printf '%s\n' "$new" >"$CONF.tmp"
    mv -f "$CONF.tmp" "$CONF"
    return 0
}

wait_ready() {
    local deadline=$((SECONDS + WAIT_S)) state resumed=0
    while ((SECONDS < deadline)); do
        state=$(node_state)
        if [[ $state =~ $READY_RE ]]; then
            say "node $HOST is $state (partition debug); logs in $BASE/log"
            return 0
        fi
        # A node left down/drained by an earlier run (a crash, a timeout) is put back once.
        if ((!resumed)) && [[ $state =~ ^(down|drain|drng|drained|draining|fail)$ ]]; then
            say "node $HOST is $state: resuming it"
            scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
            resumed=1
        fi
        running slurmctld "$CTLD_PID" || fail "slurmctld exited"
        running slurmd "$SLURMD_PID" || fail "slurmd exited"
        sleep 1
    done
    fail "node $HOST not idle after ${WAIT_S}s (sinfo says '${state:-nothing}'; scontrol: $(timeout 10 scontrol show node "$HOST" 2>&1 | grep -o 'Reason=.*' || true))"
}

ctld_up() { timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }

slurmd_up() { timeout 10 scontrol show slurmd >/dev/null 2>&1; }

# poll SECONDS CHECK...: run CHECK every half second until it succeeds or SECONDS pass.
poll() {
    local deadline=$((SECONDS + $1))
    shift
    while true; do
        "$@" && return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# ensure NAME PIDFILE UPCHECK: leave a daemon that runs and answers alone; replace one that runs
# but does not answer (stuck, or shutting down); start a missing one and wait until it answers.
ensure() {
    local name=$1 file=$2 check=$3
    if running "$name" "$file"; then
        poll 5 "$check" && return 0
        warn "$name runs but does not answer: restarting it"
        stop_daemon "$name" "$file"
    fi
    say "starting $name"
    "$name" </dev/null >>"$BASE/log/$name.out" 2>&1 || fail "$name did not start"
    poll 30 "$check" || fail "$name started but does not answer after 30 s"
}

cmd_start() {
    need_root start
    need_commands munge unmunge munged slurmctld slurmd sinfo scontrol runuser
    install -d -m 0755 "$BASE" "$BASE/run" "$BASE/log"
    install -d -m 0700 "$BASE/state" "$BASE/spool"
    setup_munge
    start_munge
    if write_conf; then
        # Daemons running with another config (or a half-start): begin again with this one.
        stop_daemon slurmd "$SLURMD_PID"
        stop_daemon slurmctld "$CTLD_PID"
    elif running slurmctld "$CTLD_PID" && running slurmd "$SLURMD_PID" && ctld_up && slurmd_up &&
        node_ready; then
        say "already running: node $HOST is $(node_state)"
        return 0
    fi
    ensure slurmctld "$CTLD_PID" ctld_up
    ensure slurmd "$SLURMD_PID" slurmd_up
    wait_ready
}

cmd_stop() {
    need_root stop
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
    stop_daemon munged "$MUNGE_PID"
    say "stopped"
}

cmd_status() {
    local name file ok=0
    for name in munged slurmctld slurmd; do
        case $name in
            munged) file=$MUNGE_PID ;;
            slurmctld) file=$CTLD_PID ;;
            slurmd) file=$SLURMD_PID ;;
        esac
        if running "$name" "$file"; then
            say "$name running (pid $(daemon_pids "$name" "$file" | tr '\n' ' ' | sed 's/ $//'))"
        else
            say "$name not running"
            ok=1
        fi
    done
    if munge_ok; then say "munge: credentials ok"; else say "munge: munge -n | unmunge fails"; ok=1; fi
    local state
    state=$(node_state)
    say "node $HOST: ${state:-no answer from slurmctld}; config $CONF; logs $BASE/log"
    [[ $state =~ $READY_RE ]] || ok=1
    return "$ok"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
