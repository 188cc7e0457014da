#!/usr/bin/env bash
# Start the local Redis and PostgreSQL that the integration tests need, if
# they are installed but not answering on 127.0.0.1. Safe to run any number of
# times: a service that already answers is left alone.
#
# A service that is not installed is reported and skipped rather than treated
# as an error here: tests/support/services.py decides what that means (skip on
# a laptop, a failure naming the missing service under CI=true).
set -euo pipefail

readonly HOST=127.0.0.1
readonly REDIS_PORT=6379
readonly POSTGRES_PORT=5432
readonly WAIT_SECONDS=15

# Bash's /dev/tcp is the fallback probe when the client tools are absent.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

redis_up() {
    if command -v redis-cli >/dev/null; then
        # A port that accepts connections may still be loading its dataset;
        # only a PONG means Redis is ready for commands.
        [[ "$(timeout 2 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
    else
        port_open "$REDIS_PORT"
    fi
}

postgres_up() {
    if command -v pg_isready >/dev/null; then
        pg_isready --quiet --host "$HOST" --port "$POSTGRES_PORT" --timeout 2
    else
        port_open "$POSTGRES_PORT"
    fi
}

wait_for() {
    local check=$1
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$check"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.25
    done
}

ensure_redis() {
    if redis_up; then
        echo "redis: already running on $HOST:$REDIS_PORT"
    elif ! command -v redis-server >/dev/null; then
        echo "redis: not installed (no redis-server on PATH); tests that need it will skip, or fail under CI=true"
    else
        # Loopback only and nothing saved: this instance exists for tests.
        redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" --save "" >/dev/null
        if wait_for redis_up; then
            echo "redis: started on $HOST:$REDIS_PORT"
        else
            echo "redis: started redis-server but it did not answer on $HOST:$REDIS_PORT within ${WAIT_SECONDS}s" >&2
        fi
    fi
}

postgres_version() {
    # The newest installed major version, should there be several.
    find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1
}

ensure_postgres() {
    local version
    version="$(postgres_version)"
    if postgres_up; then
        echo "postgres: already running on $HOST:$POSTGRES_PORT"
    elif ! command -v pg_ctlcluster >/dev/null || [[ -z "$version" ]]; then
        echo "postgres: not installed (no pg_ctlcluster or no cluster in /etc/postgresql); tests that need it will skip, or fail under CI=true"
    elif ! pg_ctlcluster --skip-systemctl-redirect "$version" main start; then
        echo "postgres: 'pg_ctlcluster $version main start' failed; see /var/log/postgresql/" >&2
    elif wait_for postgres_up; then
        echo "postgres: started cluster $version/main on $HOST:$POSTGRES_PORT"
    else
        echo "postgres: started cluster $version/main but it did not answer on $HOST:$POSTGRES_PORT within ${WAIT_SECONDS}s" >&2
    fi
}

ensure_redis
ensure_postgres
