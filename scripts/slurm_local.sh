#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (Debian's slurm-wlm and munge), for the SLURM sweep
# test (tests/test_slurm.py) and for trying `hydra/launcher=submitit_slurm` before a real cluster.
#
#   sudo scripts/slurm_local.sh install   # apt-get install slurm-wlm munge (once)
#   sudo scripts/slurm_local.sh start     # prints `export SLURM_CONF=...`: every SLURM client needs it
#   sudo scripts/slurm_local.sh stop      # cancels jobs, stops the daemons it started (by pid)
#
# Root is needed (slurmd starts jobs as their user). No systemd or cgroups: processes are tracked by
# /proc (proctrack/linuxproc), one partition `debug` with this machine's CPUs, no accounting database
# (submitit polls job states with sacct: without accounting, finished sweeps pass, but a cancelled or
# killed job leaves the launcher waiting). State, spool and logs live in $SLURM_LOCAL_DIR
# (default /tmp/rlrun-slurm). Ports 6817 (slurmctld) and 6818 (slurmd) must be free.
# Exit codes: 0 ok; 2 cannot run here (not root, not installed, port taken); 1 a daemon failed to start.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/rlrun-slurm}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)
MUNGED_PID=/run/munge/rlrun-munged.pid

die() { echo "slurm_local: $2" >&2; exit "$1"; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install() {
    [ "$(id -u)" = 0 ] || die 2 "install needs root (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

start_munge() {
    # munged refuses to start without its socket directory, owned by its user.
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if [ -S /run/munge/munge.socket.2 ] && munge -n </dev/null >/dev/null 2>&1; then
        return  # a munged already answers (ours from an earlier start, or the system's)
    fi
    [ -f /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; chown munge:munge /etc/munge/munge.key; }
    # Its pid file in its own directory (munged runs as munge, which cannot write to $DIR); `stop`
    # stops munged only when this file says this script started it.
    runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGED_PID" --force
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && return; sleep 0.1; done
    die 1 "munged did not answer; see /var/log/munge/munged.log"
}

write_conf() {
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))  # MB, leaving 1 GB to the system
    # NodeName must be `hostname -s`; everything on 127.0.0.1 so no network name has to resolve.
    cat >"$CONF" <<EOF
ClusterName=rlrun
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
ReturnToService=2
KillWait=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    [ "$(id -u)" = 0 ] || die 2 "needs root (slurmd runs jobs as their user); run it with sudo"
    command -v slurmctld >/dev/null && command -v munged >/dev/null \
        || die 2 "slurm-wlm and munge are not installed: sudo $0 install"
    if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid"; then
        echo "export SLURM_CONF=$CONF"
        return
    fi
    for port in 6817 6818; do
        if ss -ltnH "sport = :$port" | grep -q .; then die 2 "port $port is in use (another SLURM?)"; fi
    done
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    write_conf
    start_munge
    export SLURM_CONF=$CONF
    # -c: start clean, without jobs or node states of an earlier cluster in this directory.
    slurmctld -c || die 1 "slurmctld did not start; see $DIR/log/slurmctld.log"
    slurmd || die 1 "slurmd did not start; see $DIR/log/slurmd.log"
    for _ in $(seq 100); do
        state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)
        case "$state" in
            idle*|mix*|alloc*) echo "export SLURM_CONF=$CONF"; return ;;
            down*|drain*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.2
    done
    die 1 "node $HOST did not become idle (state: ${state:-none}); see $DIR/log/"
}

stop() {
    export SLURM_CONF=$CONF
    if alive "$DIR/slurmctld.pid"; then
        scancel --full --quiet "--user=$(id -un)" 2>/dev/null || true
        for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
    fi
    for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$MUNGED_PID"; do
        if alive "$pidfile"; then
            pid=$(cat "$pidfile")
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    done
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 install|start|stop" >&2; exit 64 ;;
esac
