#!/usr/bin/env bash
# `make run`, after `make start`: loads the example data (100 synthetic patients into
# `mimic`), runs the example mapping as a batch through the running pipeline, and
# shows where everything is and how to read the FHIR resources back.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings
# shellcheck source=infra/prometheus.sh
source "$ROOT/infra/prometheus.sh"
PY="$ROOT/.venv/bin/python"
API="http://127.0.0.1:$API_PORT"
T0=$(now)

example_data() {
    "$PY" test/utils/create_records_db.py --patients "${EXAMPLE_PATIENTS:-100}" --seed 1 --replace --quiet \
        >"$STATE_DIR/logs/example-data.log" 2>&1 ||
        die "loading the example data failed: see $STATE_DIR/logs/example-data.log."
    STEP_RESULT="${EXAMPLE_PATIENTS:-100} synthetic patients in database $SOURCE_DB_NAME"
}

wait_for_api() {
    local i
    for i in $(seq 1 60); do
        curl -fsS "$API/health/live" >/dev/null 2>&1 && { STEP_RESULT="$API"; return; }
        sleep 0.5
    done
    die "the api does not answer on $API: see $STATE_DIR/logs/api.log, then run make run again."
}

# The API checks tokens (API_AUTH=oidc): log in as the local stack's development
# operator, so that `river` and the curl commands below carry a token (river token).
login() {
    if [[ ${API_AUTH:-oidc} != oidc ]]; then
        STEP_RESULT="API_AUTH=$API_AUTH: no token needed"
        return
    fi
    printf 'operator-password\n' | "$ROOT/.venv/bin/river" login --user operator --password-stdin \
        >"$STATE_DIR/logs/login.log" 2>&1 ||
        die "logging in as the development user operator failed: see $STATE_DIR/logs/login.log and $STATE_DIR/logs/keycloak.log."
    STEP_RESULT="as operator (development user) at $OIDC_ISSUER; river token prints a token"
}

step "Example data" example_data
step "API" wait_for_api
step "Log in" login
say "Batch over the example mapping (examples/mappings/mimic-example.json):"
"$ROOT/.venv/bin/river" batch example-patient example-encounter example-condition --wait ||
    die "the example batch did not complete: see river status and $STATE_DIR/logs/."

say ""
say "Live sources (LIVE_SOURCES of .env.example): the extractor follows both connectors."
"$ROOT/.venv/bin/river" connectors push ||
    die "the connectors do not run: see river connectors push's message and $STATE_DIR/logs/connect.log."

id=$(curl -fsS -H "Authorization: Bearer $("$ROOT/.venv/bin/river" token)" "$API/fhir/Patient?_count=1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
say ""
say "Done in $(elapsed "$T0")s. The stack:"
bash "$ROOT/infra/status.sh" --where
cat <<TEXT

The console: $API/console/ (sign in as reader, operator or admin; password <user>-password)

Read the FHIR resources back (logged in as operator; river login logs in as you):
  auth="Authorization: Bearer \$(.venv/bin/river token)"    # valid 5 minutes: run it again after
  curl -s -H "\$auth" $API/batches
  curl -s -H "\$auth" '$API/fhir/Patient?_count=2'
  curl -s -H "\$auth" $API/fhir/Patient/$id
  curl -s -H "\$auth" -XPOST $API/preview -H 'Content-Type: application/json' \\
       -d '{"resource_id": "example-patient", "primary_key_values": [1000000]}'

Metrics and alerts: Prometheus at $PROMETHEUS_URL (alerts: $PROMETHEUS_URL/alerts); each
process's own: curl -s 127.0.0.1:$METRICS_PORT_LOADER/metrics | grep fhir_river_instances_loaded

Live: change the source, and the store follows within a second:
  .venv/bin/python test/utils/create_records_db.py --patients 3   # new patients, admissions
  .venv/bin/python test/utils/create_file_stfp.py --patients 3    # a patients.csv over SFTP
  curl -s -H "\$auth" $API/batches/live-fhir-river-mimic-cdc       # what the live path did
  curl -s -H "\$auth" $API/batches/live-fhir-river-mimic-sftp-csv
Stop everything with: make stop
TEXT
