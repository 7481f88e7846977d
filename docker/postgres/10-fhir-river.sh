#!/usr/bin/env bash
# Init script of the Compose stack's PostgreSQL (official postgres image: the
# files of /docker-entrypoint-initdb.d run once, on an empty data volume).
# POSTGRES_DB (the source database, `mimic`) exists already; this adds the FHIR
# store's database. The MIMIC schema follows (20-mimic-schema.sql, mounted from
# test/utils/mimic_schema.sql), then the `seed` service writes example data.
# Written to work whether the entrypoint runs it or sources it: no `exit`.
set -eo pipefail

fhirstore_db="${FHIRSTORE_DB_NAME:-fhirstore}"
echo "fhir-river: creating database ${fhirstore_db}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set db="$fhirstore_db" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')\gexec
SQL
