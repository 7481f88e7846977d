#!/usr/bin/env bash
# Installs what the local stack needs and is missing; fast when everything is there.
#   Debian packages: openssh-server, postgresql, a Java runtime, maven, python3-venv,
#   docker-compose, graphviz (make diagrams); the project's venv (.venv, pip install -e '.[dev]');
#   Kafka and Connect jars, the Debezium and Camel plugin folders (Maven Central),
#   all under $STATE_DIR; FerretDB too (built with Go) when asked:
#     bash infra/install.sh ferretdb     FerretDB alone
#     WITH_FERRETDB=1 bash infra/install.sh   the stack and FerretDB
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings
# shellcheck source=infra/keycloak.sh
source "$ROOT/infra/keycloak.sh"
# shellcheck source=infra/hapi.sh
source "$ROOT/infra/hapi.sh"
need_root "infra/install.sh"
case "${1:-}" in
"" | ferretdb | hapi) ;;
*) die "Unknown part '$1': bash infra/install.sh installs the whole stack, bash infra/install.sh ferretdb builds FerretDB alone, bash infra/install.sh hapi builds HAPI FHIR alone." ;;
esac
mkdir -p "$STATE_DIR" "$LOGS"

T0=$(now)

# --- Debian packages -----------------------------------------------------------------------
apt_updated=""
apt_install() {
    local policy_made=""
    if [[ -z $apt_updated ]]; then
        apt-get update -qq >"$LOGS/apt.log" 2>&1 ||
            die "apt-get update failed (see $LOGS/apt.log): check the network and Debian's sources, then run make install again."
        apt_updated=1
    fi
    # Keep Debian from starting its own sshd / PostgreSQL cluster while installing:
    # the stack runs its own, and the system's would take port 5432.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_made=1
    fi
    if [[ " $* " = *" postgresql "* && ! -e /etc/postgresql-common/createcluster.conf ]]; then
        mkdir -p /etc/postgresql-common
        echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confold "$@" >>"$LOGS/apt.log" 2>&1 || rc=$?
    [[ -n $policy_made ]] && rm -f /usr/sbin/policy-rc.d
    ((rc == 0)) ||
        die "apt-get install $* failed (see $LOGS/apt.log): check the network and Debian's sources, then run make install again."
}

debian_packages() {
    local missing=()
    [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
    pg_bin_dir >/dev/null || missing+=(postgresql)
    command -v mvn >/dev/null || missing+=(maven)
    command -v python3 >/dev/null || missing+=(python3)
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v ss >/dev/null || missing+=(iproute2)
    command -v ps >/dev/null || missing+=(procps)
    command -v dot >/dev/null || missing+=(graphviz)
    # Chromium: the console's tests drive it with Playwright (never `playwright install`).
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    # Prometheus and promtool (infra/prometheus.sh): the metrics and the alert rules.
    if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
        missing+=(prometheus)
    fi
    if [[ -z ${JAVA:-} ]] && ! command -v java >/dev/null &&
        [[ -z ${JAVA_HOME:-} || ! -x ${JAVA_HOME:-}/bin/java ]]; then
        missing+=(default-jre-headless)
    fi
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
        STEP_RESULT="installed ${missing[*]}"
    else
        STEP_RESULT="all present"
    fi
}

# The unprivileged system user the FHIR River services and Kafka Connect run as (no login,
# no home, no password): what they can write is their logs.
service_user() {
    [[ $SERVICE_USER != "$SFTP_USER" ]] ||
        die "SERVICE_USER and SFTP_USER are both $SFTP_USER: the SFTP account must not be the services' account; set SERVICE_USER to another name, then run make install again."
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        [[ $(getent passwd "$SERVICE_USER" | cut -d: -f5) = "$SERVICE_GECOS" ]] ||
            die "SERVICE_USER=$SERVICE_USER is an existing account that the stack did not create: set SERVICE_USER to another name (the services and Kafka Connect run as it), then run make install again."
        STEP_RESULT="present: $SERVICE_USER (uid $(id -u "$SERVICE_USER"))"
        return 0
    fi
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "$SERVICE_GECOS" "$SERVICE_USER" >/dev/null 2>&1 ||
        die "Could not create the system user $SERVICE_USER with useradd: set SERVICE_USER to a valid new user name, then run make install again."
    STEP_RESULT="created $SERVICE_USER (uid $(id -u "$SERVICE_USER"))"
}

# service_access: the service user can run what it runs: the venv's Python and its
# standard library (pyenv keeps them under /root, mode 700), the checkout. A directory on
# the way that it cannot cross gets a traverse-only ACL entry for it (it can pass through,
# not list or read).
service_access() {
    local target d granted=() prefix
    prefix=$("$PY" -c 'import sys; print(sys.base_prefix)')
    for target in "$(realpath "$PY")" "$prefix/lib" "$ROOT"; do
        d=""
        while IFS= read -r part; do
            [[ -n $part ]] || continue
            d+="/$part"
            [[ -d $d ]] || break
            if ! setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups -- test -x "$d"; then
                command -v setfacl >/dev/null || apt_install acl
                setfacl -m "u:$SERVICE_USER:x" "$d" ||
                    die "Could not let $SERVICE_USER cross $d (setfacl), so the services cannot run $PY as it: make $d searchable by $SERVICE_USER, then run make install again."
                granted+=("$d")
            fi
        done < <(tr '/' '\n' <<<"$target")
    done
    setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups -- \
        env HOME=/nonexistent "$PY" -c 'import confluent_kafka, psycopg, sqlalchemy' \
        >"$LOGS/service-access.log" 2>&1 ||
        die "The system user $SERVICE_USER cannot run the venv's Python $PY (see $LOGS/service-access.log): make it and the checkout $ROOT readable by $SERVICE_USER, then run make install again."
    if ((${#granted[@]})); then
        STEP_RESULT="$SERVICE_USER may cross ${granted[*]} (traverse-only ACL)"
    else
        STEP_RESULT="$SERVICE_USER runs $PY"
    fi
}

java_check() {
    find_java
    STEP_RESULT="$JAVA_BIN ($("$JAVA_BIN" -version 2>&1 | head -n1 | sed 's/.*version "\([^"]*\)".*/\1/'))"
}

# --- Python venv ---------------------------------------------------------------------------
venv() {
    local stamp="$VENV/.fhir-river-installed" sum
    if [[ ! -x $PY ]]; then
        python3 -m venv "$VENV" >"$LOGS/venv.log" 2>&1 ||
            die "Could not create the Python venv $VENV (see $LOGS/venv.log): install python3-venv (apt-get install python3-venv) and run make install again."
    fi
    sum=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
    if [[ -f $stamp && $(cat "$stamp") = "$sum" ]]; then
        STEP_RESULT="up to date (pyproject.toml unchanged)"
        return 0
    fi
    "$PY" -m pip install -q -e "${ROOT}[dev]" >"$LOGS/pip.log" 2>&1 ||
        die "pip install -e '.[dev]' failed in $VENV (see $LOGS/pip.log): fix what it says (network, pyproject.toml) and run make install again."
    printf '%s\n' "$sum" >"$stamp"
    STEP_RESULT="pip install -e '.[dev]' done"
}

# --- Maven downloads -----------------------------------------------------------------------
# maven_folder NAME DEST MAIN_ARTIFACT DEPENDENCIES_XML [EXTRA_MVN_ARGS...]
# Resolves the dependencies of a generated pom and copies their runtime jars into DEST.
# Skipped when DEST was filled from the same pom before.
maven_folder() {
    local name=$1 dest=$2 main=$3 deps=$4
    shift 4
    local work="$STATE_DIR/downloads/$name" pom sum tmp log="$LOGS/install-$name.log"
    mkdir -p "$work"
    pom="$work/pom.xml"
    cat >"$pom.new" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by infra/install.sh: the jars of the local stack's $name folder. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fhir-river.local-stack</groupId>
  <artifactId>$name</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
$deps
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>3.8.1</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
EOF
    mv "$pom.new" "$pom"
    sum=$(cat "$pom" <(printf '%s' "$*") | sha256sum | cut -d' ' -f1)
    if [[ -f $dest/.installed && $(cat "$dest/.installed") = "$sum" ]]; then
        STEP_RESULT="present: $(find "$dest" -name '*.jar' | wc -l) jars"
        return 0
    fi
    tmp="$dest.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp" "$MAVEN_REPO_LOCAL"
    if ! mvn -B -q -U -f "$pom" -Dmaven.repo.local="$MAVEN_REPO_LOCAL" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" "$@" \
        >"$log" 2>&1; then
        local what reason
        # Maven names the artifact it could not get: "Could not find artifact g:a:jar:v in
        # central (...)", "Could not transfer artifact g:a:pom:v from/to central (...): ...".
        what=$(grep -o 'artifact [^ ]*:[^ ]*:[^ ]*:[^ ]*' "$log" | head -n1 | cut -d' ' -f2 || true)
        reason=$(grep -o '\(Could not \(find\|transfer\)\|Failure to find\) .*' "$log" | head -n1 |
            sed 's/ -> \[Help.*//; s/[[:space:]]*$//' || true)
        local for_main=" (for $main)"
        [[ -n $what ]] || what=$main
        [[ $(cut -d: -f1,2 <<<"$what") = "$(cut -d: -f1,2 <<<"$main")" ]] && for_main=""
        [[ -n $reason ]] || reason=$(grep -m1 '^\[ERROR\]' "$log" | sed 's/^\[ERROR\] //' || true)
        rm -rf "$tmp"
        die "Could not download $what$for_main from Maven Central: ${reason:-see $log}; check the network and the version, then run make install again (Maven's log: $log)."
    fi
    rm -rf "$dest"
    mv "$tmp" "$dest"
    printf '%s\n' "$sum" >"$dest/.installed"
    STEP_RESULT="$(find "$dest" -name '*.jar' | wc -l) jars, $(du -sh "$dest" | cut -f1)"
}

# dep GROUP ARTIFACT VERSION [EXCLUDED_GROUP...]: one <dependency>, without the subtrees of
# the excluded groups (Maven's wildcard exclusions).
dep() {
    local g=$1 a=$2 v=$3 x
    shift 3
    printf '    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version>' "$g" "$a" "$v"
    if (($#)); then
        printf '<exclusions>'
        for x in "$@"; do
            printf '<exclusion><groupId>%s</groupId><artifactId>*</artifactId></exclusion>' "$x"
        done
        printf '</exclusions>'
    fi
    printf '</dependency>\n'
}

kafka_jars() {
    local deps a
    deps=$(
        # No connect-file: its FileStream connectors read and write any file Connect can.
        for a in kafka_2.13 kafka-tools connect-runtime connect-json connect-transforms; do
            dep org.apache.kafka "$a" "$KAFKA_VERSION"
        done
        dep org.apache.logging.log4j log4j-slf4j-impl "$LOG4J_VERSION"
    )
    maven_folder kafka "$KAFKA_LIB" "org.apache.kafka:kafka_2.13:$KAFKA_VERSION" "$deps"
}

debezium_plugin() {
    local deps
    deps=$(
        dep io.debezium debezium-connector-postgres "$DEBEZIUM_VERSION" \
            org.apache.kafka org.slf4j com.fasterxml.jackson.core
        dep com.fasterxml.jackson.datatype jackson-datatype-jsr310 "$JACKSON_JSR310_VERSION" \
            com.fasterxml.jackson.core
    )
    # Kafka, slf4j and Jackson core come from the worker: copies in the plugin folder
    # break the JSON converter (NoSuchMethodException ... JsonConverter.convertToConnect).
    maven_folder debezium "$DEBEZIUM_DIR" "io.debezium:debezium-connector-postgres:$DEBEZIUM_VERSION" \
        "$deps"
}

camel_plugin() {
    local deps
    deps=$(
        dep org.apache.camel.kafkaconnector camel-kafka-connector "$CAMEL_KAFKA_CONNECTOR_VERSION" \
            org.apache.kafka
        dep org.apache.camel camel-ftp "$CAMEL_VERSION" org.apache.kafka
        dep org.apache.camel camel-csv "$CAMEL_VERSION" org.apache.kafka
    )
    maven_folder camel "$CAMEL_DIR" \
        "org.apache.camel.kafkaconnector:camel-kafka-connector:$CAMEL_KAFKA_CONNECTOR_VERSION" \
        "$deps"
}

# plugin.discovery=service_load finds only plugins that list themselves in
# META-INF/services; the Camel connector predates that, so Kafka's own tool writes a
# manifest jar into its folder (connect-plugin-path sync-manifests; Debezium has its own).
# The Camel sink connector is then taken out of that manifest: FHIR River uses the source
# only, and Connect offers no connector it does not use.
plugin_manifests() {
    local marker="$PLUGINS/.manifests" sum log="$LOGS/install-manifests.log" shim
    sum=$( (cat "$CAMEL_DIR/.installed" && echo "sources only") | sha256sum | cut -d' ' -f1)
    if [[ -f $marker && $(cat "$marker") = "$sum" ]]; then
        STEP_RESULT="present"
        return 0
    fi
    "$JAVA_BIN" -cp "$KAFKA_LIB/*" -Dlog4j2.level=warn org.apache.kafka.tools.ConnectPluginPath \
        sync-manifests --plugin-location "$CAMEL_DIR" >"$log" 2>&1 ||
        die "Kafka's connect-plugin-path tool could not write the plugins' manifests (see $log): remove $PLUGINS and run make install again."
    for shim in "$CAMEL_DIR"/connect-plugin-path-shim-*.jar; do
        python3 - "$shim" >>"$log" 2>&1 <<'EOF' ||
import os, sys, zipfile
jar = sys.argv[1]
sink = "META-INF/services/org.apache.kafka.connect.sink.SinkConnector"
with zipfile.ZipFile(jar) as old, zipfile.ZipFile(jar + ".new", "w", zipfile.ZIP_DEFLATED) as new:
    for item in old.infolist():
        if item.filename != sink:
            new.writestr(item, old.read(item))
os.replace(jar + ".new", jar)
print("removed", sink, "from", jar)
EOF
            die "Could not take the Camel sink connector out of $shim (see $log): remove $PLUGINS and run make install again."
    done
    printf '%s\n' "$sum" >"$marker"
    STEP_RESULT="manifests written"
}

# --- FerretDB (only when asked) ------------------------------------------------------------
# `go install .../cmd/ferretdb@vX` builds a binary that panics at start (Invalid
# build/version/version.txt): build from a copy of the module's source with that file written.
# Go's module cache (about 640 MB) stays where Go keeps it, so later builds reuse it.
ferretdb_build() {
    local log="$LOGS/install-ferretdb.log" module="github.com/FerretDB/FerretDB@v$FERRETDB_VERSION"
    local dir work="$FERRETDB_HOME/src"
    if ferretdb_built; then
        STEP_RESULT="present: $FERRETDB_BIN (v$FERRETDB_VERSION)"
        return 0
    fi
    find_go
    mkdir -p "$FERRETDB_HOME/bin"
    dir=$(cd "$FERRETDB_HOME" && "$GO_BIN" mod download -json "$module" 2>"$log" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
    [[ -n $dir && -f $dir/go.mod ]] ||
        die "Could not download FerretDB $FERRETDB_VERSION's source with $GO_BIN (see $log): check the network, GOPROXY and FERRETDB_VERSION, then run bash infra/install.sh ferretdb again."
    rm -rf "$work" "$FERRETDB_BIN.tmp"
    cp -r "$dir/." "$work"
    chmod -R u+w "$work"
    printf 'v%s\n' "$FERRETDB_VERSION" >"$work/build/version/version.txt"
    if ! (cd "$work" && "$GO_BIN" build -trimpath -o "$FERRETDB_BIN.tmp" ./cmd/ferretdb) >>"$log" 2>&1; then
        rm -rf "$work" "$FERRETDB_BIN.tmp"
        die "Building FerretDB $FERRETDB_VERSION with $GO_BIN failed (see $log): fix what it says (network, Go 1.24 or newer), then run bash infra/install.sh ferretdb again."
    fi
    mv "$FERRETDB_BIN.tmp" "$FERRETDB_BIN"
    rm -rf "$work"
    STEP_RESULT="built $FERRETDB_BIN ($(du -h "$FERRETDB_BIN" | cut -f1))"
}

if [[ ${1:-} = hapi ]]; then
    say "Installing HAPI FHIR (state in $STATE_DIR)"
    step "HAPI FHIR $HAPI_VERSION" hapi_install
    say "Installed in $(elapsed "$T0")s."
    exit 0
fi

if [[ ${1:-} = ferretdb ]]; then
    say "Installing FerretDB (state in $STATE_DIR)"
    step "FerretDB $FERRETDB_VERSION" ferretdb_build
    say "Installed in $(elapsed "$T0")s."
    exit 0
fi

say "Installing the local stack (state in $STATE_DIR)"
step "Debian packages" debian_packages
step "Java" java_check
step "Service user" service_user
step "Python venv" venv
step "Service user's access" service_access
command -v mvn >/dev/null ||
    die "Maven (mvn) is missing, so the Kafka jars cannot be downloaded: install it (apt-get install maven) and run make install again."
step "Debezium plugin" debezium_plugin
step "Camel SFTP/CSV plugin" camel_plugin
step "Kafka $KAFKA_VERSION jars" kafka_jars
step "Connect plugin manifests" plugin_manifests
step "Keycloak $KEYCLOAK_VERSION" keycloak_install
if want_ferretdb; then step "FerretDB $FERRETDB_VERSION" ferretdb_build; fi
if want_hapi; then step "HAPI FHIR $HAPI_VERSION" hapi_install; fi
say "Installed in $(elapsed "$T0")s."
