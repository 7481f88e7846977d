#!/usr/bin/env bash
# Stops what start.sh started: the services, Kafka Connect, Kafka, sshd, PostgreSQL, in that
# order (and FerretDB, if it runs). SIGTERM, then SIGKILL after a timeout. Idempotent:
# stopping a stopped stack is fine.   bash infra/stop.sh ferretdb   stops FerretDB alone.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings
# shellcheck source=infra/keycloak.sh
source "$ROOT/infra/keycloak.sh"
# shellcheck source=infra/prometheus.sh
source "$ROOT/infra/prometheus.sh"
# shellcheck source=infra/hapi.sh
source "$ROOT/infra/hapi.sh"

case "${1:-}" in
"" | ferretdb | hapi) ;;
*) die "Unknown part '$1': bash infra/stop.sh stops the whole stack, bash infra/stop.sh ferretdb stops FerretDB alone, bash infra/stop.sh hapi stops HAPI FHIR alone." ;;
esac

T0=$(now)

stop_part() { # stop_part PART PORT TIMEOUT
    local part=$1 port=$2 timeout=$3 pid
    pid=$(running "$part" "$port")
    if [[ -z $pid ]]; then
        STEP_RESULT="not running"
    else
        stop_pid "$pid" "$timeout"
        STOPPED+=("$pid")
        STEP_RESULT="stopped (pid $pid)"
    fi
    rm -f "$PIDS/$part.pid"
}

postgres_stop() {
    local pid bin
    pid=$(running postgres "$POSTGRES_PORT")
    if [[ -z $pid ]]; then
        STEP_RESULT="not running"
    elif bin=$(pg_bin_dir) && as_postgres "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop \
        >"$LOGS/postgres-pg_ctl.log" 2>&1; then
        STEP_RESULT="stopped (pid $pid)"
        STOPPED+=("$pid")
    else
        stop_pid "$pid" 30
        STOPPED+=("$pid")
        STEP_RESULT="stopped with signals (pid $pid; pg_ctl failed, see $LOGS/postgres-pg_ctl.log)"
    fi
    rm -f "$PIDS/postgres.pid"
}

# Anything still running with our marker (see is_ours in lib.sh): killed by pid. Then wait
# until init has reaped what we stopped, so that ps shows nothing of ours, not even <defunct>.
leftovers() {
    local p found=() deadline
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [[ $p = "$$" || $p = "$BASHPID" ]] && continue
        is_ours "$p" && alive "$p" && found+=("$p")
    done
    for p in "${found[@]}"; do stop_pid "$p" 5; done
    deadline=$((SECONDS + 10))
    for p in "${STOPPED[@]}" "${found[@]}"; do
        while [[ -e /proc/$p ]] && ((SECONDS < deadline)); do sleep 0.1; done
    done
    STEP_RESULT="${#found[@]} left${found[*]:+ (stopped: ${found[*]})}"
}

STOPPED=()
mkdir -p "$LOGS"
if [[ ${1:-} = hapi ]]; then
    say "Stopping HAPI FHIR"
    step "HAPI FHIR" stop_part hapi "$HAPI_PORT" 30
    exit 0
fi
if [[ ${1:-} = ferretdb ]]; then
    say "Stopping FerretDB (state in $FERRETDB_HOME)"
    step "FerretDB" stop_part ferretdb "$FERRETDB_PORT" 10
    exit 0
fi
say "Stopping the local stack (state in $STATE_DIR)"
step "Prometheus" stop_part prometheus "$PROMETHEUS_PORT" 10
for s in loader transformer extractor api; do
    port=""
    [[ $s = api ]] && port=$API_PORT
    [[ -f $PIDS/$s.pid || -f $ROOT/$s/__main__.py ]] && step "$s" stop_part "$s" "$port" 20
done
step "FerretDB" stop_part ferretdb "$FERRETDB_PORT" 10
step "HAPI FHIR" stop_part hapi "$HAPI_PORT" 30
step "Keycloak" stop_part keycloak "$KEYCLOAK_PORT" 20
step "Kafka Connect" stop_part connect "$KAFKA_CONNECT_PORT" 30
step "Kafka" stop_part kafka "$KAFKA_PORT" 30
step "SFTP (OpenSSH)" stop_part sshd "$SFTP_PORT" 10
step "PostgreSQL" postgres_stop
step "Leftover processes" leftovers
say "Stopped in $(elapsed "$T0")s."
