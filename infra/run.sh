#!/usr/bin/env bash
# `make run` after `make start`: loads the example data and runs the example mapping.
# For now it only says where each part listens; data loading comes here.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings

# --- hook: example data and the example mapping (to be written) ---------------------------
# e.g. "$PY" test/utils/<loader>.py ../shared/data/mimic-iii-demo, then POST /batch.

say "FHIR River local stack:"
bash "$ROOT/infra/status.sh" --where
say "Stop it with: make stop"
exit 0
