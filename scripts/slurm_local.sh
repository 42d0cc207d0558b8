#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (Debian's slurm-wlm and munge, with accounting through
# slurmdbd and MariaDB as real clusters have), for the SLURM tests (tests/test_slurm.py,
# tests/test_cluster_slurm.py) and for trying `hydra/launcher=submitit_slurm` before a real cluster.
#
#   sudo scripts/slurm_local.sh install   # apt-get install slurm-wlm munge slurmdbd mariadb-server (once)
#   sudo scripts/slurm_local.sh start     # prints `export SLURM_CONF=...`: every SLURM client needs it
#   sudo scripts/slurm_local.sh stop      # cancels jobs, stops the daemons it started (by pid)
#
# Root is needed (slurmd starts jobs as their user). No systemd or cgroups: processes are tracked by
# /proc (proctrack/linuxproc), one partition `debug` with this machine's CPUs. Accounting: submitit
# polls job states with sacct, and without an accounting database a cancelled or killed job leaves its
# launcher waiting forever; so where slurmdbd and MariaDB are installed, `start` runs a throwaway
# MariaDB (as root, on 127.0.0.1:3306) and slurmdbd (port 6819) too, else it says it runs without.
# State, spool, database and logs live in $SLURM_LOCAL_DIR (default /tmp/rlrun-slurm). Ports 6817
# (slurmctld), 6818 (slurmd), 6819 (slurmdbd) and 3306 (MariaDB) must be free.
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
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge slurmdbd mariadb-server >/dev/null
}

have_accounting() { command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null; }

start_database() {
    # A throwaway MariaDB for slurmdbd: its own data directory, socket and pid file in $DIR, TCP on
    # 127.0.0.1 only. As root (--user=root): a folder under a private /tmp (pytest's) is closed to `mysql`.
    if [ ! -d "$DIR/mysql/mysql" ]; then
        mariadb-install-db --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
            >"$DIR/log/mariadb-install.log" 2>&1 || die 1 "mariadb-install-db failed; see $DIR/log/mariadb-install.log"
    fi
    mariadbd --user=root --datadir="$DIR/mysql" --socket="$DIR/mysql.sock" --pid-file="$DIR/mariadb.pid" \
        --port=3306 --bind-address=127.0.0.1 --skip-name-resolve --log-error="$DIR/log/mariadb.log" \
        --innodb-buffer-pool-size=32M >/dev/null 2>&1 &
    for _ in $(seq 100); do
        mariadb --socket="$DIR/mysql.sock" -u root -e 'select 1' >/dev/null 2>&1 && break; sleep 0.2
    done
    mariadb --socket="$DIR/mysql.sock" -u root -e "
        CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'rlrun-slurmdbd';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" \
        || die 1 "MariaDB did not start; see $DIR/log/mariadb.log"
}

start_slurmdbd() {
    # slurmdbd refuses a config readable by others (it holds the database password).
    cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=$HOST
DbdPort=6819
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=rlrun-slurmdbd
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/slurmdbd.conf"
    # slurmdbd reads slurmdbd.conf beside $SLURM_CONF.
    SLURM_CONF=$CONF slurmdbd || die 1 "slurmdbd did not start; see $DIR/log/slurmdbd.log"
    for _ in $(seq 100); do
        ss -ltnH "sport = :6819" | grep -q . && return; sleep 0.2
    done
    die 1 "slurmdbd did not listen on 6819; see $DIR/log/slurmdbd.log"
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
    local cpus mem accounting
    if have_accounting; then
        accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819"
    else
        accounting="AccountingStorageType=accounting_storage/none"
    fi
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
$accounting
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
    local ports="6817 6818"
    have_accounting && ports="$ports 6819 3306"
    for port in $ports; do
        if ss -ltnH "sport = :$port" | grep -q .; then die 2 "port $port is in use (another SLURM or database?)"; fi
    done
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    write_conf
    start_munge
    export SLURM_CONF=$CONF
    if have_accounting; then
        start_database
        start_slurmdbd
        # The cluster's record in the accounting database (slurmctld would add it too, after a delay).
        sacctmgr -i add cluster rlrun >/dev/null 2>&1 || true
    else
        echo "slurm_local: no accounting (slurmdbd, mariadb-server not installed): sacct will not answer" >&2
    fi
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
    for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/slurmdbd.pid" "$DIR/mariadb.pid" "$MUNGED_PID"; do
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
