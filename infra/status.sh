#!/usr/bin/env bash
# One line per part of the local stack: running or stopped, where it listens, its pid; a
# FHIR River service that exited (make stop did not stop it) with the last line of its log.
#   --where   also says how to reach each part (used at the end of start.sh and run.sh).
# Exit code 0 whatever runs or not.
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

where=""
[[ ${1:-} = --where ]] && where=1

line() { # line PART PORT ADDRESS DETAILS
    local part=$1 port=$2 address=$3 details=$4 pid state
    pid=$(running "$part" "$port")
    if [[ -n $pid ]]; then state=running; else state=stopped; fi
    printf '  %-13s %-8s %-36s %s\n' "$part" "$state" "$address" \
        "${pid:+pid $pid}${where:+${details:+  $details}}"
}

service_line() { # service_line NAME ADDRESS: a service, or the service that exited and why
    local name=$1 address=$2 last
    if ! service_exited "$name"; then
        line "$name" "$(service_port "$name")" "$address" ""
        return 0
    fi
    last=$(last_log_line "$LOGS/$name.log")
    printf '  %-13s %-8s %-36s %s\n' "$name" exited "$address" \
        "last line of $LOGS/$name.log: ${last:-(empty)}"
}

line postgres "$POSTGRES_PORT" "127.0.0.1:$POSTGRES_PORT" \
    "databases $SOURCE_DB_NAME, $FHIRSTORE_DB_NAME (user $POSTGRES_USER)"
line kafka "$KAFKA_PORT" "127.0.0.1:$KAFKA_PORT" \
    "topics: $(topics); SASL/SCRAM (user $KAFKA_SCRAM_USER) on 127.0.0.1:$KAFKA_SASL_PORT"
line connect "$KAFKA_CONNECT_PORT" "http://127.0.0.1:$KAFKA_CONNECT_PORT" "GET /connector-plugins"
line sshd "$SFTP_PORT" "sftp://$SFTP_USER@127.0.0.1:$SFTP_PORT" "upload/data, upload/error, upload/finished"
line keycloak "$KEYCLOAK_PORT" "$KEYCLOAK_URL" \
    "realm fhir-river; development users reader, operator, admin (password <user>-password)"
if [[ -n $(running ferretdb "$FERRETDB_PORT") ]] || want_ferretdb; then
    line ferretdb "$FERRETDB_PORT" "mongodb://127.0.0.1:$FERRETDB_PORT" \
        "FerretDB v$FERRETDB_VERSION (SQLite in $FERRETDB_DATA; debug http://127.0.0.1:$FERRETDB_DEBUG_PORT/debug)"
fi
if [[ -n $(running hapi "$HAPI_PORT") ]] || want_hapi; then
    line hapi "$HAPI_PORT" "$HAPI_URL" "HAPI FHIR $HAPI_VERSION (database $HAPI_DB_NAME)"
fi
for s in "${SERVICES[@]}"; do
    if [[ -f $ROOT/$s/__main__.py ]]; then
        if [[ $s = api ]]; then
            service_line api "http://127.0.0.1:$API_PORT"
        else
            service_line "$s" "(consumer)"
        fi
    fi
done
line prometheus "$PROMETHEUS_PORT" "$PROMETHEUS_URL" \
    "scrapes the metrics of api, extractor, transformer, loader (ports $METRICS_PORT_API-$METRICS_PORT_LOADER); alerts $PROMETHEUS_URL/alerts"
[[ -z $where ]] || say "  logs: $LOGS"
exit 0
