# HAPI FHIR JPA server, an optional FHIR server target of the local stack (README, Loading
# into a FHIR server). Sourced by install.sh, start.sh, stop.sh and status.sh after lib.sh;
# not run. Asked for with WITH_HAPI=1 (environment or .env), or alone:
#   bash infra/install.sh hapi    bash infra/start.sh hapi    bash infra/stop.sh hapi
#
# install: builds infra/hapi (a small Spring Boot application around
# ca.uhn.hapi.fhir:hapi-fhir-jpaserver-base, from Maven Central) into $HAPI_JAR; built again
# when infra/hapi changed. start: the database `hapi` in the local PostgreSQL (made if
# missing), then the server on 127.0.0.1:$HAPI_PORT, base $HAPI_URL. With WITH_HAPI=1,
# start.sh also points the services at it (FHIR_SERVER_URL, unless .env sets one).

# shellcheck disable=SC2034  # variables set here are used by the scripts that source this file
: "${HAPI_VERSION:=8.8.0}" "${HAPI_PORT:=8090}" "${HAPI_DB_NAME:=hapi}" "${HAPI_HEAP:=1g}"
: "${HAPI_START_TIMEOUT:=240}"
export HAPI_PORT
HAPI_HOME="$STATE_DIR/hapi"
HAPI_JAR="$HAPI_HOME/fhir-river-hapi.jar"
HAPI_SRC="$ROOT/infra/hapi"
HAPI_URL="http://127.0.0.1:$HAPI_PORT/fhir"

# want_hapi: HAPI was asked for (WITH_HAPI=1, in the environment or .env).
want_hapi() { [[ ${WITH_HAPI:-} =~ ^([1yY]|[tT]rue|[yY]es|on)$ ]]; }

# hapi_source_sum: a checksum of the application's sources (pom, classes, YAML).
hapi_source_sum() {
    (cd "$HAPI_SRC" && find pom.xml src -type f -print0 | sort -z | xargs -0 sha256sum) |
        sha256sum | cut -d' ' -f1
}

hapi_built() { [[ -s $HAPI_JAR && -f $HAPI_HOME/.sum && $(cat "$HAPI_HOME/.sum") = "$(hapi_source_sum)" ]]; }

hapi_install() {
    local log="$LOGS/install-hapi.log" sum work="$HAPI_HOME/build"
    if hapi_built; then
        STEP_RESULT="present: $HAPI_JAR"
        return 0
    fi
    command -v mvn >/dev/null ||
        die "Maven (mvn) is missing, so HAPI FHIR cannot be built: install it (apt-get install maven) and run make install again."
    find_java
    sum=$(hapi_source_sum)
    # Built in a copy under the state dir: the checkout stays clean (no target/).
    rm -rf "$work"
    mkdir -p "$work" "$MAVEN_REPO_LOCAL"
    cp -r "$HAPI_SRC/pom.xml" "$HAPI_SRC/src" "$work/"
    if ! (cd "$work" && mvn -B -q -Dmaven.repo.local="$MAVEN_REPO_LOCAL" \
        -Dhapi.version="$HAPI_VERSION" package -DskipTests) >"$log" 2>&1; then
        die "Could not build HAPI FHIR $HAPI_VERSION from Maven Central (see $log): check the network and HAPI_VERSION, then run make install again."
    fi
    mv "$work/target/fhir-river-hapi.jar" "$HAPI_JAR.tmp"
    mv "$HAPI_JAR.tmp" "$HAPI_JAR"
    printf '%s\n' "$sum" >"$HAPI_HOME/.sum"
    rm -rf "$work"
    STEP_RESULT="built $HAPI_JAR ($(du -h "$HAPI_JAR" | cut -f1))"
}

hapi_preflight() {
    hapi_built ||
        die "HAPI FHIR is not built (or infra/hapi changed): run bash infra/install.sh hapi (or WITH_HAPI=1 make install; about 1 minute the first time), then run this again."
    [[ -n $(running hapi "$HAPI_PORT") ]] || check_port_free "$HAPI_PORT" HAPI_PORT "HAPI FHIR"
}

# hapi_database: the database HAPI keeps its resources in, made when missing.
hapi_database() {
    local bin
    bin=$(pg_bin_dir) || die "PostgreSQL's client is not installed: run make install, then run this again."
    [[ -n $(running postgres "$POSTGRES_PORT") ]] ||
        die "PostgreSQL does not run, and HAPI FHIR keeps its resources there: run make start (or bash infra/start.sh) first."
    "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$POSTGRES_PORT" \
        -U "$POSTGRES_USER" -d postgres -v db="$HAPI_DB_NAME" >"$LOGS/hapi-db.log" 2>&1 <<'EOF' ||
SELECT format('CREATE DATABASE %I', :'db')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
EOF
        die "Could not make HAPI's database $HAPI_DB_NAME in PostgreSQL (see $LOGS/hapi-db.log): fix what it says, then run this again."
}

hapi_start() {
    local pid note log="$LOGS/hapi.log" rc=0
    pid=$(running hapi "$HAPI_PORT")
    if [[ -n $pid ]]; then
        note="reused (pid $pid)"
    else
        find_java
        hapi_database
        (
            # Exported, not on the command line: ps shows command lines to every user.
            export SERVER_PORT=$HAPI_PORT SERVER_ADDRESS=127.0.0.1
            export SPRING_DATASOURCE_URL="jdbc:postgresql://127.0.0.1:$POSTGRES_PORT/$HAPI_DB_NAME"
            export SPRING_DATASOURCE_USERNAME=$POSTGRES_USER SPRING_DATASOURCE_PASSWORD=$POSTGRES_PASSWORD
            spawn hapi "$log" "$JAVA_BIN" "-Xmx$HAPI_HEAP" -XX:+UseParallelGC -jar "$HAPI_JAR"
        )
        pid=$(cat "$PIDS/hapi.pid")
        note="started (pid $pid)"
    fi
    "$PY" "$ROOT/infra/probe.py" http --url "$HAPI_URL/metadata" --timeout "$HAPI_START_TIMEOUT" \
        --pid "$pid" 2>/dev/null || rc=$?
    case $rc in
    0) ;;
    2) die "HAPI FHIR exited while starting: see the end of $log, fix what it says, then run this again." ;;
    *) die "HAPI FHIR was not ready on $HAPI_URL within ${HAPI_START_TIMEOUT}s: see $log, then stop it (bash infra/stop.sh hapi) and start it again." ;;
    esac
    STEP_RESULT="$note, $HAPI_URL (database $HAPI_DB_NAME)"
}

# hapi_target: with WITH_HAPI=1 the services load into HAPI, unless FHIR_SERVER_URL says
# where else.
hapi_target() {
    if want_hapi && [[ -z ${FHIR_SERVER_URL:-} ]]; then
        export FHIR_SERVER_URL=$HAPI_URL
    fi
}
