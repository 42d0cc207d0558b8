#!/usr/bin/env bash
# A throwaway PostgreSQL server on this machine (Debian's postgresql package), for the tuner's
# PostgreSQL tests (tests/test_tune_postgres.py) and for trying `rlrun-tune tune.storage=postgresql://...`
# before a real database server.
#
#   sudo scripts/postgres_local.sh install   # apt-get install postgresql (once; Debian 12: PostgreSQL 15)
#   sudo scripts/postgres_local.sh start     # prints `export PGURL=...` and `export PGPASSWORD=...`
#   sudo scripts/postgres_local.sh stop      # stops the server and deletes its data
#
# Root is needed (the server runs as the `postgres` user). The server listens on 127.0.0.1 only, port
# $PG_LOCAL_PORT (default 55432), with password authentication (scram-sha-256, as real servers have):
# user postgres, password $PG_LOCAL_PASSWORD (default: generated), database `rlrun`. Data, socket and
# log live in $PG_LOCAL_DIR (default /tmp/rlrun-postgres), a folder the postgres user owns.
# Exit codes: 0 ok; 2 cannot run here (not root, not installed, port taken); 1 the server failed to start.
set -euo pipefail

DIR=${PG_LOCAL_DIR:-/tmp/rlrun-postgres}
PORT=${PG_LOCAL_PORT:-55432}

die() { echo "postgres_local: $2" >&2; exit "$1"; }

bindir() {
    # Debian keeps the server programs (initdb, pg_ctl) under /usr/lib/postgresql/<version>/bin.
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] || return 1
    echo "$dir"
}

as_postgres() { runuser -u postgres -- "$@"; }

install() {
    [ "$(id -u)" = 0 ] || die 2 "install needs root (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

start() {
    [ "$(id -u)" = 0 ] || die 2 "needs root (the server runs as the postgres user); run it with sudo"
    local bin password
    bin=$(bindir) || die 2 "PostgreSQL is not installed: sudo $0 install"
    id postgres >/dev/null 2>&1 || die 2 "no postgres user: sudo $0 install"
    if ss -ltnH "sport = :$PORT" | grep -q .; then die 2 "port $PORT is in use (set PG_LOCAL_PORT)"; fi
    password=${PG_LOCAL_PASSWORD:-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}
    rm -rf "$DIR"
    mkdir -p "$DIR"
    chown postgres:postgres "$DIR"
    chmod 700 "$DIR"
    as_postgres sh -c "umask 077; printf '%s\n' '$password' > '$DIR/pwfile'"
    as_postgres "$bin/initdb" -D "$DIR/data" -A scram-sha-256 --pwfile="$DIR/pwfile" -U postgres \
        >"$DIR/initdb.log" 2>&1 || die 1 "initdb failed; see $DIR/initdb.log"
    rm -f "$DIR/pwfile"
    as_postgres "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1" start >/dev/null \
        || die 1 "the server did not start; see $DIR/server.log"
    PGPASSWORD=$password "$bin/createdb" -h 127.0.0.1 -p "$PORT" -U postgres rlrun \
        || die 1 "createdb rlrun failed; see $DIR/server.log"
    echo "export PGURL=postgresql://postgres@127.0.0.1:$PORT/rlrun"
    echo "export PGPASSWORD=$password"
}

stop() {
    local bin
    bin=$(bindir) || return 0
    if [ -f "$DIR/data/postmaster.pid" ]; then
        as_postgres "$bin/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 install|start|stop" >&2; exit 64 ;;
esac
