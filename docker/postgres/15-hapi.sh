#!/usr/bin/env bash
# Init script of the Compose stack's PostgreSQL (after 10-fhir-river.sh): the role and
# the database of the `hapi` profile's HAPI FHIR, made once, on an empty volume,
# whatever the profile (so that turning the profile on later needs no new volume):
#
#   river_hapi           owns the hapi database (HAPI_DB_NAME); HAPI makes its tables
#
# A volume made before this script existed lacks both: the script is safe to run again,
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/15-hapi.sh
# Written to work whether the entrypoint runs it or sources it: no `exit`.
set -eo pipefail

hapi_db="${HAPI_DB_NAME:-hapi}"
echo "fhir-river: role river_hapi, database ${hapi_db} (owner river_hapi)"
# The password reaches psql through its environment (\getenv), not its command line.
: "${HAPI_DB_PASSWORD:?set HAPI_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set db="$hapi_db" <<'SQL'
\getenv hapi_password HAPI_DB_PASSWORD
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', 'river_hapi', :'hapi_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'river_hapi')\gexec
SELECT format('CREATE DATABASE %I OWNER river_hapi', :'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')\gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db')\gexec
SQL
