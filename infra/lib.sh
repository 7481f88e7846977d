# Shared helpers of the local stack scripts (infra/*.sh). Sourced, not run.
#
# Settings: .env.example gives the defaults, .env (if present) overrides them,
# and a variable already set in the environment wins over both.
#
# Variables beside .env.example that the scripts honour (environment only):
#   JAVA                    the java binary (default: $JAVA_HOME/bin/java, else java on PATH)
#   MAVEN_REPO_LOCAL        Maven's local repository (default: ~/.m2/repository)
#   KAFKA_VERSION DEBEZIUM_VERSION CAMEL_KAFKA_CONNECTOR_VERSION CAMEL_VERSION
#   LOG4J_VERSION JACKSON_JSR310_VERSION   versions downloaded by install.sh
#   SFTP_CHROOT_LINK        root-owned symlink to the SFTP chroot (default under /srv)
#   WITH_FERRETDB=1         install.sh and start.sh also build and start FerretDB (MongoDB wire
#                           protocol, to test the MongoDB store; docs/operations.md): if asked
#   FERRETDB_VERSION FERRETDB_DEBUG_PORT   FerretDB's version and its debug/readiness HTTP port
#   GO                      the go binary that builds FerretDB (default: go on PATH, else
#                           /usr/local/go/bin/go)
#   SERVICE_START_TIMEOUT   seconds start.sh waits for each FHIR River service to be ready
#                           (default 30); one that exits meanwhile fails make start
#   SERVICE_USER            the unprivileged system user the FHIR River services and Kafka
#                           Connect run as (default fhir-river; made by install.sh)

# shellcheck disable=SC2034  # variables set here are used by the scripts that source this file
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT" || exit 1

# --- output --------------------------------------------------------------------------------
say() { printf '%s\n' "$*"; }
warn() { printf 'Warning: %s\n' "$*" >&2; }
# die SENTENCE: the one sentence that says what went wrong and what to do.
die() {
    printf 'Error: %s\n' "$*" >&2
    exit 1
}

now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
# elapsed START: seconds since START with one decimal.
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# step LABEL FUNCTION [ARGS...]: runs FUNCTION, prints LABEL, its result line and duration.
# FUNCTION may set STEP_RESULT to a short text printed after the label.
step() {
    local label=$1 t0
    shift
    t0=$(now)
    STEP_RESULT=""
    "$@"
    printf '  %-26s %6ss  %s\n' "$label" "$(elapsed "$t0")" "${STEP_RESULT:-done}"
}

# --- settings ------------------------------------------------------------------------------
load_settings() {
    local f line key val
    local -A from_env=()
    for key in $(compgen -e); do from_env[$key]=1; done
    for f in "$ROOT/.env.example" "$ROOT/.env"; do
        [[ -f $f ]] || continue
        while IFS= read -r line || [[ -n $line ]]; do
            line=${line%$'\r'}
            [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
            key=${BASH_REMATCH[2]}
            val=${BASH_REMATCH[3]}
            if [[ $val =~ ^\"(.*)\"[[:space:]]*$ || $val =~ ^\'(.*)\'[[:space:]]*$ ]]; then
                val=${BASH_REMATCH[1]}
            else
                val=${val%%[[:space:]]#*}
                val=${val%"${val##*[![:space:]]}"}
            fi
            [[ -n ${from_env[$key]+x} ]] && continue
            printf -v "$key" '%s' "$val"
            export "${key?}"
        done <"$f"
    done

    : "${STATE_DIR:=.state}" "${KAFKA_PORT:=9092}" "${KAFKA_CONTROLLER_PORT:=9093}"
    : "${KAFKA_CONNECT_PORT:=8083}" "${POSTGRES_PORT:=5432}" "${POSTGRES_USER:=postgres}"
    : "${POSTGRES_PASSWORD:=postgres}" "${SOURCE_DB_NAME:=mimic}" "${FHIRSTORE_DB_NAME:=fhirstore}"
    : "${SFTP_PORT:=2222}" "${SFTP_USER:=river}" "${SFTP_PASSWORD:=river}"
    : "${KAFKA_TOPIC_PREFIX:=}" "${KAFKA_TOPIC_PARTITIONS:=3}" "${API_PORT:=3000}"
    : "${KAFKA_MESSAGE_MAX_BYTES:=16777216}"
    # Kafka security: the SASL/SCRAM listener beside the PLAINTEXT one, and what the
    # services and Connect use (KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT: that listener).
    : "${KAFKA_SASL_PORT:=9094}" "${KAFKA_SECURITY_PROTOCOL:=PLAINTEXT}"
    : "${KAFKA_SASL_MECHANISM:=SCRAM-SHA-512}" "${SERVICE_USER:=fhir-river}"
    : "${KAFKA_VERSION:=4.3.1}" "${DEBEZIUM_VERSION:=3.7.0.Final}"
    : "${CAMEL_KAFKA_CONNECTOR_VERSION:=0.11.0}" "${CAMEL_VERSION:=3.11.1}"
    : "${LOG4J_VERSION:=2.25.4}" "${JACKSON_JSR310_VERSION:=2.21.2}"
    : "${MAVEN_REPO_LOCAL:=$HOME/.m2/repository}"
    : "${FERRETDB_PORT:=27017}" "${FERRETDB_DEBUG_PORT:=27018}" "${FERRETDB_VERSION:=1.24.2}"

    [[ $STATE_DIR = /* ]] || STATE_DIR="$ROOT/$STATE_DIR"
    STATE_DIR=$(realpath -m "$STATE_DIR")
    export STATE_DIR KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_CONNECT_PORT POSTGRES_PORT \
        POSTGRES_USER POSTGRES_PASSWORD SOURCE_DB_NAME FHIRSTORE_DB_NAME SFTP_PORT SFTP_USER \
        SFTP_PASSWORD KAFKA_TOPIC_PREFIX KAFKA_TOPIC_PARTITIONS API_PORT FERRETDB_PORT \
        KAFKA_MESSAGE_MAX_BYTES KAFKA_SASL_PORT
    # The broker and its topics accept the largest event plus room for a record
    # batch's headers (adapters/kafka.py, FRAMING).
    KAFKA_BROKER_MAX_BYTES=$((KAFKA_MESSAGE_MAX_BYTES + 65536))

    # Where each part keeps its files.
    LOGS="$STATE_DIR/logs"
    PIDS="$STATE_DIR/pids"
    KAFKA_HOME="$STATE_DIR/kafka"
    KAFKA_LIB="$KAFKA_HOME/lib"
    # The SCRAM user of the SASL listener (made at every start) and its password, generated
    # once into this file (mode 600), never printed.
    KAFKA_SCRAM_USER=${KAFKA_SASL_USERNAME:-fhir-river}
    KAFKA_SASL_PASSWORD_FILE="$KAFKA_HOME/sasl/$KAFKA_SCRAM_USER.password"
    PLUGINS="$STATE_DIR/connect-plugins"
    DEBEZIUM_DIR="$PLUGINS/debezium-connector-postgres"
    CAMEL_DIR="$PLUGINS/camel-kafka-connector"
    PG_HOME="$STATE_DIR/postgres"
    PG_DATA="$PG_HOME/data"
    PG_SOCKET_DIR="$PG_HOME/run"
    SFTP_HOME="$STATE_DIR/sftp"
    SFTP_ROOT="$SFTP_HOME/root"
    if [[ -z ${SFTP_CHROOT_LINK:-} ]]; then
        SFTP_CHROOT_LINK="/srv/fhir-river-sftp-$(printf '%s' "$STATE_DIR" | md5sum | cut -c1-8)"
    fi
    FERRETDB_HOME="$STATE_DIR/ferretdb"
    FERRETDB_BIN="$FERRETDB_HOME/bin/ferretdb"
    FERRETDB_DATA="$FERRETDB_HOME/data"
    VENV="$ROOT/.venv"
    PY="$VENV/bin/python"
}

# --- processes -----------------------------------------------------------------------------
# is_ours PID: the process is alive and was started by this stack for this state dir: every
# part runs with FHIR_RIVER_STACK=<state dir> in its environment (see spawn), so a pid
# reused by another program, or someone's `tail -f .state/logs/...`, is never taken for ours.
is_ours() {
    local pid=$1
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/environ ]] || return 1
    grep -qzxF -- "FHIR_RIVER_STACK=$STATE_DIR" "/proc/$pid/environ" 2>/dev/null && return 0
    # sshd rewrites its environment area with its process title, which keeps the command line:
    # "sshd: /usr/sbin/sshd -D -f <state>/sftp/sshd_config ... [listener] ...".
    local cmd sshd="/usr/sbin/sshd -D -f $STATE_DIR/sftp/sshd_config "
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == "$sshd"* || $cmd == "sshd: $sshd"* ]]
}

# pid_of PART: the pid of our running PART, from its pid file; empty when not running.
pid_of() {
    local f="$PIDS/$1.pid" pid
    [[ $1 = postgres && -f $PG_DATA/postmaster.pid ]] && f="$PG_DATA/postmaster.pid"
    [[ -f $f ]] || return 0
    pid=$(head -n1 "$f" 2>/dev/null || true)
    if is_ours "$pid"; then printf '%s' "$pid"; fi
    return 0
}

# running PART PORT: pid of our PART, from its pid file or else from the listener on PORT
# when that listener is ours (then the pid file is written again); empty when not running.
running() {
    local part=$1 port=$2 pid
    pid=$(pid_of "$part")
    if [[ -z $pid && -n $port ]]; then
        pid=$(listener_pid "$port")
        if is_ours "$pid"; then
            [[ $part = postgres ]] || { mkdir -p "$PIDS" && echo "$pid" >"$PIDS/$part.pid"; }
        else
            pid=""
        fi
    fi
    printf '%s' "$pid"
}

# spawn PART LOGFILE CMD...: starts CMD in its own session, detached, pid in $PIDS/PART.pid.
spawn() {
    local part=$1 log=$2
    shift 2
    mkdir -p "$PIDS" "$(dirname "$log")"
    rm -f "$PIDS/$part.pid"
    # shellcheck disable=SC2016  # $$ and "$@" belong to the inner bash
    FHIR_RIVER_STACK=$STATE_DIR setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
        "$PIDS/$part.pid" "$@" >>"$log" 2>&1 </dev/null &
    for _ in $(seq 100); do
        [[ -s $PIDS/$part.pid ]] && return 0
        sleep 0.02
    done
    die "$part did not start (no pid file after 2 s): see $log."
}

# descendants PID: every process below PID.
descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        printf '%s\n' "$child"
        descendants "$child"
    done
}

# alive PID: the process exists and is not a zombie waiting for its parent (init here).
alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# stop_pid PID TIMEOUT: SIGTERM to PID (and what it started), SIGKILL after TIMEOUT seconds.
stop_pid() {
    local pid=$1 timeout=$2 kids p deadline
    kids=$(descendants "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + timeout))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then
        warn "pid $pid did not stop within ${timeout}s after SIGTERM: sending SIGKILL."
        kill -KILL "$pid" 2>/dev/null || true
    fi
    for p in $kids; do alive "$p" && kill -TERM "$p" 2>/dev/null; done
    sleep 0.2
    for p in $kids; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
    while alive "$pid"; do sleep 0.05; done
    return 0
}

# --- ports ---------------------------------------------------------------------------------
# listener_pid PORT: pid of the process listening on TCP PORT (empty if none or unknown).
listener_pid() {
    ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2
    return 0
}
listening() { [[ -n $(ss -ltnH "sport = :$1" 2>/dev/null) ]]; }

# check_port_free PORT SETTING PART: stops with one sentence when another process holds PORT.
check_port_free() {
    local port=$1 setting=$2 part=$3 pid who other
    listening "$port" || return 0
    pid=$(listener_pid "$port")
    if [[ -z $pid ]]; then
        die "Port $port ($setting, for $part) is already in use by an unknown process (see ss -ltnp): stop that process or set $setting to a free port in .env, then run this again."
    fi
    who="$(ps -o comm= -p "$pid" 2>/dev/null || echo '?') (pid $pid)"
    # Another checkout's local stack (its own state dir) holds the port?
    other=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^FHIR_RIVER_STACK=//p' | head -n1 || true)
    if [[ -n $other ]]; then
        die "Port $port ($setting, for $part) is already in use by $who of the local stack whose state is in $other: stop that stack (make stop in its checkout) or set $setting to a free port in .env, then run this again."
    fi
    die "Port $port ($setting, for $part) is already in use by $who: stop that process or set $setting to a free port in .env, then run this again."
}

# --- Java ----------------------------------------------------------------------------------
# find_java: sets JAVA_BIN or stops with one sentence; checks Java >= 17.
find_java() {
    local v
    if [[ -n ${JAVA:-} ]]; then
        [[ -x $JAVA && ! -d $JAVA ]] ||
            die "Java not found: JAVA=$JAVA is not an executable, so Kafka cannot run; install Java 17 or newer (apt-get install default-jre-headless, which make install does) or point JAVA or JAVA_HOME at one."
        JAVA_BIN=$JAVA
    elif [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
        JAVA_BIN=$JAVA_HOME/bin/java
    elif command -v java >/dev/null 2>&1; then
        JAVA_BIN=$(command -v java)
    else
        die "Java not found (no java on PATH, JAVA and JAVA_HOME unset), so Kafka cannot run; install Java 17 or newer (apt-get install default-jre-headless, which make install does) or point JAVA or JAVA_HOME at one."
    fi
    v=$("$JAVA_BIN" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -n1)
    if [[ -z $v || $v -lt 17 ]]; then
        die "Java at $JAVA_BIN is version ${v:-unknown}, but Kafka $KAFKA_VERSION needs Java 17 or newer; install one (apt-get install default-jre-headless) or point JAVA or JAVA_HOME at it."
    fi
}

need_root() {
    [[ $(id -u) -eq 0 ]] ||
        die "$1 must run as root (it installs packages, runs PostgreSQL as user postgres and a chrooted sshd): run it with sudo."
}

pg_bin_dir() {
    local d
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4 -n -r); do
        [[ -x $d/pg_ctl && -x $d/postgres ]] && {
            printf '%s' "$d"
            return 0
        }
    done
    return 1
}

# as_postgres CMD...: runs CMD as the postgres system user.
as_postgres() { runuser -u postgres -- "$@"; }

# topics: the pipeline's topic names, with KAFKA_TOPIC_PREFIX, space-separated.
topics() {
    local t names=()
    for t in batch extract transform load errors extract-live transform-live; do names+=("$KAFKA_TOPIC_PREFIX$t"); done
    printf '%s' "${names[*]}"
}

# want_ferretdb: FerretDB was asked for (WITH_FERRETDB=1, in the environment or .env).
want_ferretdb() { [[ ${WITH_FERRETDB:-} =~ ^([1yY]|[tT]rue|[yY]es|on)$ ]]; }

# ferretdb_built: the FerretDB binary of $FERRETDB_VERSION is in the state dir.
ferretdb_built() {
    [[ -x $FERRETDB_BIN ]] &&
        [[ $("$FERRETDB_BIN" --version 2>/dev/null | sed -n 's/^version: //p') = "v$FERRETDB_VERSION" ]]
}

# find_go: sets GO_BIN or stops with one sentence.
find_go() {
    if [[ -n ${GO:-} ]]; then
        [[ -x $GO && ! -d $GO ]] ||
            die "Go not found: GO=$GO is not an executable, so FerretDB cannot be built; install Go 1.24 or newer (https://go.dev/dl/) or point GO at one."
        GO_BIN=$GO
    elif command -v go >/dev/null 2>&1; then
        GO_BIN=$(command -v go)
    elif [[ -x /usr/local/go/bin/go ]]; then
        GO_BIN=/usr/local/go/bin/go
    else
        die "Go not found (no go on PATH nor in /usr/local/go, GO unset), so FerretDB cannot be built; install Go 1.24 or newer (https://go.dev/dl/) or point GO at one."
    fi
}

# The four FHIR River services: started by start.sh only once python -m <name> exists.
SERVICES=(api extractor transformer loader)

# --- least privilege: the services' and Connect's system user ------------------------------
# service_user_check: stops with one sentence unless SERVICE_USER exists (install.sh makes it).
SERVICE_GECOS="FHIR River local stack services"
service_user_check() {
    id -u "$SERVICE_USER" >/dev/null 2>&1 ||
        die "The system user $SERVICE_USER (SERVICE_USER), which the FHIR River services and Kafka Connect run as, does not exist: run make install (it creates it), then run this again."
    [[ $SERVICE_USER != "$SFTP_USER" ]] ||
        die "SERVICE_USER and SFTP_USER are both $SFTP_USER: the SFTP account must not be the services' account; set SERVICE_USER to another name, then run make install and this again."
}

# as_service: sets AS_SERVICE to the command prefix that runs a command as SERVICE_USER,
# without root's capabilities, unable to gain privileges (no-new-privs), with the
# environment start.sh gives it: `spawn PART LOG "${AS_SERVICE[@]}" CMD...`. Each part of
# the prefix execs the next, so the pid spawn records is the command's.
as_service() {
    AS_SERVICE=(setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups
        --no-new-privs --inh-caps=-all -- env HOME=/nonexistent USER="$SERVICE_USER"
        LOGNAME="$SERVICE_USER")
}

# service_log FILE...: log files a service-user process writes, made and owned by it; the
# logs folder takes files of anyone, each deletable only by its owner (mode 1775), so
# that Connect's log rolls over.
service_log() {
    local f
    chgrp "$SERVICE_USER" "$LOGS" && chmod 1775 "$LOGS"
    for f in "$@"; do
        touch "$f"
        chown "$SERVICE_USER:$SERVICE_USER" "$f"
        chmod 640 "$f"
    done
}

# kafka_clients: sets KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
# KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD for the stack's own Kafka clients (the
# services, Connect) when KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT: the SASL listener, the
# stack's SCRAM user and its password. Call it from a function that made these variables
# local (local -x NAME="$NAME"), so that only what that function starts gets them.
kafka_clients() {
    KAFKA_SECURITY_PROTOCOL=${KAFKA_SECURITY_PROTOCOL^^}
    [[ $KAFKA_SECURITY_PROTOCOL = SASL_PLAINTEXT ]] || return 0
    KAFKA_SASL_MECHANISM=${KAFKA_SASL_MECHANISM^^}
    case $KAFKA_BOOTSTRAP_SERVERS in
    "" | "127.0.0.1:$KAFKA_PORT" | "localhost:$KAFKA_PORT") KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_SASL_PORT" ;;
    esac
    KAFKA_SASL_USERNAME=$KAFKA_SCRAM_USER
    if [[ -z ${KAFKA_SASL_PASSWORD:-} ]]; then
        KAFKA_SASL_PASSWORD=$(cat "$KAFKA_SASL_PASSWORD_FILE" 2>/dev/null) ||
            die "$KAFKA_SASL_PASSWORD_FILE is missing, so the services cannot log in to Kafka's SASL listener: run make stop and make start (start makes it)."
    fi
}

# --- the FHIR River services ---------------------------------------------------------------
# A service started by start.sh keeps its pid file until stop.sh removes it, so a pid file
# whose process is gone means the service exited: start.sh and status.sh say so, with the
# last line of its log (its one-sentence error, or the last line of a trace).

# service_port NAME: the port the service listens on (the api's), empty for a consumer.
service_port() {
    [[ $1 = api ]] && printf '%s' "$API_PORT"
    return 0
}

# last_log_line FILE: the last line of FILE that is not blank (500 characters at most);
# empty when there is none.
last_log_line() {
    [[ -s $1 ]] || return 0
    tail -n 50 "$1" | tr -d '\r' | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c1-500 || true
}

# service_exited NAME: the service was started (pid file) and no longer runs.
service_exited() {
    [[ -f $PIDS/$1.pid && -z $(running "$1" "$(service_port "$1")") ]]
}

# http_answers PORT PATH: an HTTP answer (any status) from 127.0.0.1:PORT: the api's
# workers serve (gunicorn listens before they load the app, and exits if they cannot).
http_answers() {
    local line=""
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3 2>/dev/null || true
    IFS= read -r -t 10 line <&3 || true
    exec 3<&-
    [[ $line == HTTP/* ]]
}

# service_ready NAME OFFSET: the service says it serves: the api answers HTTP, a consumer
# logged "<name> consuming ..." (adapters/kafka.py, once subscribed) after byte OFFSET of
# its log, which every start appends to.
service_ready() {
    local name=$1 offset=$2
    if [[ $name = api ]]; then
        http_answers "$API_PORT" /health
    else
        # Process substitution, not a pipe: grep -q would end tail with SIGPIPE (pipefail).
        # Either LOG_FORMAT: `... INFO <name> consuming ...`, `..."message":"<name> consuming ...`.
        grep -qE -- "[ \"]$name consuming " < <(tail -c "+$((offset + 1))" "$LOGS/$name.log" 2>/dev/null)
    fi
}

# services_start [NAME...]: the step that starts the FHIR River services (default: all of
# SERVICES whose package has a __main__.py) that do not run, then waits until each is ready,
# has exited, or SERVICE_START_TIMEOUT seconds (default 30) passed: a service that exits at
# start (a setting to fix) takes a few seconds to do so. Sets STEP_RESULT, and
# SERVICES_EXITED to the services that exited (die_if_services_exited says which, and why).
services_start() {
    local s names=("$@") waiting=() still label listed
    local timeout=${SERVICE_START_TIMEOUT:-30} slow result
    local -A state=() offset=()
    # Only the services get the stack's Kafka credentials (KAFKA_SECURITY_PROTOCOL=SASL_*).
    local -x KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-}"
    local -x KAFKA_SECURITY_PROTOCOL="${KAFKA_SECURITY_PROTOCOL:-PLAINTEXT}"
    local -x KAFKA_SASL_MECHANISM="${KAFKA_SASL_MECHANISM:-}"
    local -x KAFKA_SASL_USERNAME="${KAFKA_SASL_USERNAME:-}"
    local -x KAFKA_SASL_PASSWORD="${KAFKA_SASL_PASSWORD:-}"
    service_user_check
    as_service
    kafka_clients
    slow="not ready after ${timeout}s (see the logs)"
    SERVICES_EXITED=()
    ((${#names[@]})) || names=("${SERVICES[@]}")
    for s in "${names[@]}"; do
        if [[ ! -f $ROOT/$s/__main__.py ]]; then
            state[$s]="not written yet"
        elif [[ -n $(running "$s" "$(service_port "$s")") ]]; then
            state[$s]=running
        else
            offset[$s]=$(stat -c %s "$LOGS/$s.log" 2>/dev/null || echo 0)
            service_log "$LOGS/$s.log"
            spawn "$s" "$LOGS/$s.log" "${AS_SERVICE[@]}" "$PY" -m "$s"
            waiting+=("$s")
        fi
    done
    local deadline=$((SECONDS + timeout))
    while ((${#waiting[@]})); do
        still=()
        for s in "${waiting[@]}"; do
            if ! alive "$(cat "$PIDS/$s.pid")"; then
                state[$s]=exited
                SERVICES_EXITED+=("$s")
            elif service_ready "$s" "${offset[$s]}"; then
                state[$s]=running
            else
                still+=("$s")
            fi
        done
        waiting=("${still[@]}")
        ((${#waiting[@]})) || break
        if ((SECONDS >= deadline)); then
            # Alive but silent (LOG_LEVEL above INFO, a slow source): they run, said as such.
            for s in "${waiting[@]}"; do state[$s]=$slow; done
            break
        fi
        sleep 0.2
    done
    result=""
    for label in running "$slow" exited "not written yet"; do
        listed=()
        for s in "${names[@]}"; do [[ ${state[$s]} != "$label" ]] || listed+=("$s"); done
        if ((${#listed[@]})) || [[ $label = running ]]; then
            result+="; $label: ${listed[*]:-none}"
        fi
    done
    STEP_RESULT=${result#; }
}

# die_if_services_exited: after services_start, stops (exit 1) with one sentence naming
# each service that exited at start and the last line of its log.
die_if_services_exited() {
    local s last said sentence="" what="fix what it says"
    ((${#SERVICES_EXITED[@]})) || return 0
    for s in "${SERVICES_EXITED[@]}"; do
        last=$(last_log_line "$LOGS/$s.log")
        said="is empty"
        [[ -z $last ]] || said="ends with \"$last\""
        sentence+="${sentence:+; }the $s service exited right after starting, its log $LOGS/$s.log $said"
    done
    ((${#SERVICES_EXITED[@]} < 2)) || what="fix what they say"
    die "$sentence: $what, then run make start again."
}
