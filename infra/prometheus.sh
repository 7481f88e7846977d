# Prometheus, the local stack's metrics and alerts (Debian's `prometheus` package, installed
# by install.sh). Sourced by start.sh, stop.sh and status.sh after lib.sh; not run.
#
# It scrapes the four FHIR River processes' metrics ports (METRICS_PORT_*, on METRICS_HOST)
# every 5 s and evaluates infra/prometheus/alerts.yml; the configuration is written at each
# start into $PROMETHEUS_HOME from infra/prometheus/prometheus.yml, with the ports of .env.
# A Prometheus already running is told to read it again (SIGHUP).

# shellcheck disable=SC2034  # variables set here are used by the scripts that source this file
: "${PROMETHEUS_PORT:=9090}" "${PROMETHEUS_BIN:=$(command -v prometheus || echo /usr/bin/prometheus)}"
: "${METRICS_HOST:=127.0.0.1}" "${METRICS_PORT_API:=9100}" "${METRICS_PORT_EXTRACTOR:=9101}"
: "${METRICS_PORT_TRANSFORMER:=9102}" "${METRICS_PORT_LOADER:=9103}"
export PROMETHEUS_PORT
PROMETHEUS_HOME="$STATE_DIR/prometheus"
PROMETHEUS_URL="http://127.0.0.1:$PROMETHEUS_PORT"
PROMETHEUS_RULES="$ROOT/infra/prometheus/alerts.yml"

prometheus_preflight() {
    [[ -x $PROMETHEUS_BIN ]] ||
        die "Prometheus is not installed ($PROMETHEUS_BIN): run make install (it installs Debian's prometheus package), then make start."
    [[ -n $(running prometheus "$PROMETHEUS_PORT") ]] ||
        check_port_free "$PROMETHEUS_PORT" PROMETHEUS_PORT Prometheus
}

# prometheus_config: writes $PROMETHEUS_HOME/prometheus.yml; stops if promtool refuses it.
prometheus_config() {
    local host=$METRICS_HOST
    [[ $host = 0.0.0.0 ]] && host=127.0.0.1
    mkdir -p "$PROMETHEUS_HOME/data"
    sed -e "s|@RULES@|$PROMETHEUS_RULES|" -e "s|@METRICS_HOST@|$host|g" \
        -e "s|@METRICS_PORT_API@|$METRICS_PORT_API|" \
        -e "s|@METRICS_PORT_EXTRACTOR@|$METRICS_PORT_EXTRACTOR|" \
        -e "s|@METRICS_PORT_TRANSFORMER@|$METRICS_PORT_TRANSFORMER|" \
        -e "s|@METRICS_PORT_LOADER@|$METRICS_PORT_LOADER|" \
        "$ROOT/infra/prometheus/prometheus.yml" >"$PROMETHEUS_HOME/prometheus.yml"
    if command -v promtool >/dev/null &&
        ! promtool check config "$PROMETHEUS_HOME/prometheus.yml" >"$LOGS/promtool.log" 2>&1; then
        die "promtool refuses $PROMETHEUS_HOME/prometheus.yml or infra/prometheus/alerts.yml (see $LOGS/promtool.log): fix what it says, then run make start again."
    fi
}

prometheus_start() {
    local pid note log="$LOGS/prometheus.log" rc=0
    prometheus_config
    pid=$(running prometheus "$PROMETHEUS_PORT")
    if [[ -n $pid ]]; then
        kill -HUP "$pid" 2>/dev/null || true # read the configuration and the rules again
        note="reused (pid $pid)"
    else
        spawn prometheus "$log" "$PROMETHEUS_BIN" --config.file="$PROMETHEUS_HOME/prometheus.yml" \
            --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
            --storage.tsdb.path="$PROMETHEUS_HOME/data" --storage.tsdb.retention.time=7d
        pid=$(cat "$PIDS/prometheus.pid")
        note="started (pid $pid)"
    fi
    "$PY" "$ROOT/infra/probe.py" http --url "$PROMETHEUS_URL/-/ready" --timeout 30 --pid "$pid" \
        2>/dev/null || rc=$?
    case $rc in
    0) ;;
    2) die "Prometheus exited while starting: see the end of $log, fix what it says, then run make start again." ;;
    *) die "Prometheus was not ready on 127.0.0.1:$PROMETHEUS_PORT within 30 s: see $log, then run make stop and make start again." ;;
    esac
    STEP_RESULT="$note, $PROMETHEUS_URL (alerts: $PROMETHEUS_URL/alerts)"
}
