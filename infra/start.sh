#!/usr/bin/env bash
# Starts the local stack on 127.0.0.1: PostgreSQL, Kafka (KRaft), the pipeline's topics,
# Kafka Connect (distributed), an SFTP server (OpenSSH), then the FHIR River services that
# exist. A part already running is reused. Install first: infra/install.sh (make install).
# FerretDB (MongoDB wire protocol, to test the MongoDB store) starts only when asked:
#   bash infra/start.sh ferretdb            FerretDB alone (built by infra/install.sh ferretdb)
#   WITH_FERRETDB=1 bash infra/start.sh     the stack and FerretDB
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

T0=$(now)

# --- FerretDB (only when asked) ------------------------------------------------------------
# SQLite handler, files in $FERRETDB_DATA (docs/operations.md: it deadlocks less than its PostgreSQL
# handler, and keeps the store's PostgreSQL out of it). Readiness: its debug HTTP port.
ferretdb_preflight() { # after the ports were checked to be numbers and distinct
    ferretdb_built ||
        die "FerretDB $FERRETDB_VERSION is not built in $FERRETDB_HOME: run bash infra/install.sh ferretdb (it builds it with Go, about 4 minutes the first time), then run this again."
    [[ -x $PY ]] || die "The Python venv $VENV is missing: run make install, then run this again."
    if [[ -z $(running ferretdb "$FERRETDB_PORT") ]]; then
        check_port_free "$FERRETDB_PORT" FERRETDB_PORT FerretDB
        check_port_free "$FERRETDB_DEBUG_PORT" FERRETDB_DEBUG_PORT "FerretDB's debug server"
    fi
}

ferretdb_start() {
    local pid note="" log="$LOGS/ferretdb.log" rc=0
    pid=$(running ferretdb "$FERRETDB_PORT")
    if [[ -n $pid ]]; then
        note="reused (pid $pid)"
    else
        mkdir -p "$FERRETDB_DATA" "$FERRETDB_HOME/state" "$LOGS"
        spawn ferretdb "$log" "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$FERRETDB_DATA/" \
            --listen-addr="127.0.0.1:$FERRETDB_PORT" --debug-addr="127.0.0.1:$FERRETDB_DEBUG_PORT" \
            --state-dir="$FERRETDB_HOME/state" --telemetry=disable --log-level=error
        pid=$(cat "$PIDS/ferretdb.pid")
        note="started (pid $pid)"
    fi
    "$PY" "$ROOT/infra/probe.py" http --url "http://127.0.0.1:$FERRETDB_DEBUG_PORT/debug/readyz" \
        --timeout 30 --pid "$pid" 2>/dev/null || rc=$?
    case $rc in
    0) ;;
    2) die "FerretDB exited while starting: see the end of $log, fix what it says, then run bash infra/start.sh ferretdb again." ;;
    *) die "FerretDB did not answer on 127.0.0.1:$FERRETDB_DEBUG_PORT within 30 s: see $log, then run bash infra/stop.sh ferretdb and bash infra/start.sh ferretdb again." ;;
    esac
    STEP_RESULT="$note, mongodb://127.0.0.1:$FERRETDB_PORT"
}

# --- preflight: everything that would stop us, before anything starts --------------------
need_root "infra/start.sh"
case "${1:-}" in
"" | ferretdb | hapi) ;;
*) die "Unknown part '$1': bash infra/start.sh starts the whole stack, bash infra/start.sh ferretdb starts FerretDB alone, bash infra/start.sh hapi starts HAPI FHIR alone." ;;
esac

if [[ ${1:-} = hapi ]]; then
    find_java
    hapi_preflight
    mkdir -p "$LOGS" "$PIDS"
    say "Starting HAPI FHIR (log $LOGS/hapi.log)"
    step "HAPI FHIR $HAPI_VERSION" hapi_start
    exit 0
fi

declare -A PORT_OF=()
if [[ ${1:-} != ferretdb ]]; then
    find_java
    PORT_OF=(
        [POSTGRES_PORT]=$POSTGRES_PORT [KAFKA_PORT]=$KAFKA_PORT
        [KAFKA_CONTROLLER_PORT]=$KAFKA_CONTROLLER_PORT [KAFKA_CONNECT_PORT]=$KAFKA_CONNECT_PORT
        [SFTP_PORT]=$SFTP_PORT [KAFKA_SASL_PORT]=$KAFKA_SASL_PORT
    )
fi
if [[ ${1:-} = ferretdb ]] || want_ferretdb; then
    PORT_OF[FERRETDB_PORT]=$FERRETDB_PORT
    PORT_OF[FERRETDB_DEBUG_PORT]=$FERRETDB_DEBUG_PORT
fi
declare -A SETTING_OF=()
for setting in "${!PORT_OF[@]}"; do
    port=${PORT_OF[$setting]}
    if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
        die "$setting=$port is not a TCP port number: set it to a free port in .env."
    fi
    if [[ -n ${SETTING_OF[$port]:-} ]]; then
        die "$setting and ${SETTING_OF[$port]} are both $port: give each part its own port in .env."
    fi
    SETTING_OF[$port]=$setting
done

if [[ ${1:-} = ferretdb ]]; then
    ferretdb_preflight
    mkdir -p "$LOGS" "$PIDS"
    say "Starting FerretDB (state in $FERRETDB_HOME, log $LOGS/ferretdb.log)"
    step "FerretDB $FERRETDB_VERSION" ferretdb_start
    exit 0
fi

[[ -n $(running postgres "$POSTGRES_PORT") ]] || check_port_free "$POSTGRES_PORT" POSTGRES_PORT PostgreSQL
if [[ -z $(running kafka "$KAFKA_PORT") ]]; then
    check_port_free "$KAFKA_PORT" KAFKA_PORT Kafka
    check_port_free "$KAFKA_CONTROLLER_PORT" KAFKA_CONTROLLER_PORT "Kafka's controller"
    check_port_free "$KAFKA_SASL_PORT" KAFKA_SASL_PORT "Kafka's SASL/SCRAM listener"
fi
[[ -n $(running connect "$KAFKA_CONNECT_PORT") ]] ||
    check_port_free "$KAFKA_CONNECT_PORT" KAFKA_CONNECT_PORT "Kafka Connect"
[[ -n $(running sshd "$SFTP_PORT") ]] || check_port_free "$SFTP_PORT" SFTP_PORT SFTP
if [[ -f $ROOT/api/__main__.py && -z $(running api "$API_PORT") ]]; then
    check_port_free "$API_PORT" API_PORT "the API"
fi

PG_BIN=$(pg_bin_dir) || die "PostgreSQL's server is not installed: run make install (it installs Debian's postgresql), then make start."
[[ -x /usr/sbin/sshd ]] || die "OpenSSH's server is not installed: run make install (it installs Debian's openssh-server), then make start."
[[ -x $PY ]] || die "The Python venv $VENV is missing: run make install, then make start."
if want_ferretdb; then ferretdb_preflight; fi
if want_hapi; then hapi_preflight; fi
keycloak_preflight
prometheus_preflight
for d in "$KAFKA_LIB" "$DEBEZIUM_DIR" "$CAMEL_DIR"; do
    [[ -f $d/.installed ]] || die "$d is not installed: run make install (it downloads the Kafka and Connect jars into $STATE_DIR), then make start."
done
# The stack's Kafka offers PLAINTEXT and SASL_PLAINTEXT (SCRAM-SHA-512): its clients use one.
case ${KAFKA_SECURITY_PROTOCOL^^} in
PLAINTEXT) ;;
SASL_PLAINTEXT)
    [[ ${KAFKA_SASL_MECHANISM^^} = SCRAM-SHA-512 ]] ||
        die "KAFKA_SASL_MECHANISM=$KAFKA_SASL_MECHANISM: the local stack's SASL listener takes SCRAM-SHA-512 only; set KAFKA_SASL_MECHANISM=SCRAM-SHA-512 in .env, then make start again."
    ;;
*) die "KAFKA_SECURITY_PROTOCOL=$KAFKA_SECURITY_PROTOCOL: the local stack's Kafka offers PLAINTEXT (port $KAFKA_PORT) and SASL_PLAINTEXT (SCRAM-SHA-512, port $KAFKA_SASL_PORT) only; set one of them in .env, then make start again." ;;
esac
service_user_check

mkdir -p "$LOGS" "$PIDS"
say "Starting the local stack (state in $STATE_DIR, logs in $LOGS)"

# --- PostgreSQL ----------------------------------------------------------------------------
psql_as_admin() { # psql_as_admin DB [psql args...]: through our private unix socket
    local db=$1
    shift
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$POSTGRES_PORT" \
        -U "$POSTGRES_USER" -d "$db" "$@"
}

postgres_start() {
    local pid log="$LOGS/postgres.log" note=""
    pid=$(running postgres "$POSTGRES_PORT")
    if [[ -n $pid ]]; then
        note="reused (pid $pid)"
    else
        mkdir -p "$PG_HOME" "$PG_SOCKET_DIR"
        chown postgres: "$PG_HOME" "$PG_SOCKET_DIR"
        chmod 700 "$PG_HOME"
        if [[ ! -f $PG_DATA/PG_VERSION ]]; then
            rm -rf "$PG_DATA"
            printf '%s\n' "$POSTGRES_PASSWORD" >"$PG_HOME/pwfile"
            chown postgres: "$PG_HOME/pwfile"
            chmod 600 "$PG_HOME/pwfile"
            as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U "$POSTGRES_USER" --pwfile="$PG_HOME/pwfile" \
                -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 \
                >"$LOGS/postgres-initdb.log" 2>&1 ||
                die "PostgreSQL's initdb failed in $PG_DATA (see $LOGS/postgres-initdb.log): fix what it says, or remove $PG_DATA, then run make start again."
            rm -f "$PG_HOME/pwfile"
            echo "include_if_exists = 'river.conf'" >>"$PG_DATA/postgresql.conf"
            note="initdb, "
        fi
        # Written at every start, so that a new POSTGRES_PORT is taken.
        cat >"$PG_DATA/river.conf" <<EOF
# Written by infra/start.sh at every start.
port = $POSTGRES_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_SOCKET_DIR'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
EOF
        chown postgres: "$PG_DATA/river.conf"
        touch "$log"
        chown postgres: "$log"
        as_postgres env FHIR_RIVER_STACK="$STATE_DIR" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$log" \
            -w -t 60 start >"$LOGS/postgres-pg_ctl.log" 2>&1 ||
            die "PostgreSQL did not start on 127.0.0.1:$POSTGRES_PORT (see $log): fix what it says, then run make start again."
        pid=$(pid_of postgres)
        note+="started (pid $pid)"
    fi
    echo "$pid" >"$PIDS/postgres.pid"
    # The password of .env, and the two databases (both idempotent).
    psql_as_admin postgres -v user="$POSTGRES_USER" -v pw="$POSTGRES_PASSWORD" \
        -v src="$SOURCE_DB_NAME" -v store="$FHIRSTORE_DB_NAME" >/dev/null <<'EOF' ||
ALTER ROLE :"user" WITH PASSWORD :'pw';
SELECT format('CREATE DATABASE %I', d) FROM unnest(ARRAY[:'src', :'store']) AS d
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d) \gexec
EOF
        die "Could not set up PostgreSQL's databases $SOURCE_DB_NAME and $FHIRSTORE_DB_NAME (see $log): fix what it says, then run make start again."
    note+=", databases $SOURCE_DB_NAME $FHIRSTORE_DB_NAME"
    local schema="$ROOT/test/utils/mimic_schema.sql"
    if [[ -f $schema ]]; then
        if psql_as_admin "$SOURCE_DB_NAME" -f "$schema" >"$LOGS/mimic-schema.log" 2>&1; then
            note+=", MIMIC schema"
        else
            warn "applying test/utils/mimic_schema.sql to $SOURCE_DB_NAME failed (see $LOGS/mimic-schema.log); the stack goes on without it."
        fi
    fi
    STEP_RESULT="$note"
}

# --- Kafka ---------------------------------------------------------------------------------
log4j2_config() { # log4j2_config FILE LOGFILE [EXTRA_LOGGERS_XML]
    cat >"$1" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by infra/start.sh. -->
<Configuration status="warn">
  <Appenders>
    <RollingFile name="file" fileName="$2" filePattern="$2.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="20MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN"/>
${3:-}
  </Loggers>
</Configuration>
EOF
}

# wait_ready PART PID LOG CMD...: CMD waits for PART; stops with one sentence if PART died.
wait_ready() {
    local part=$1 pid=$2 log=$3 rc=0
    shift 3
    "$@" || rc=$?
    case $rc in
    0) return 0 ;;
    2) die "$part exited while starting: see the end of $log (and ${log%.log}.out), fix what it says, then run make start again." ;;
    *) die "$part did not become ready in time: see $log, then run make stop and make start again." ;;
    esac
}

kafka_start() {
    local pid note="" props="$KAFKA_HOME/server.properties" log="$LOGS/kafka.log"
    pid=$(running kafka "$KAFKA_PORT")
    if [[ -n $pid ]]; then
        note="reused (pid $pid)"
    else
        mkdir -p "$KAFKA_HOME/data"
        cat >"$props" <<EOF
# Written by infra/start.sh at every start: one node, broker and controller (KRaft).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
# SASL/SCRAM beside PLAINTEXT: its users live in the metadata log (start.sh adds one).
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$KAFKA_HOME/data
num.partitions=$KAFKA_TOPIC_PARTITIONS
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
# One size limit for every part (KAFKA_MESSAGE_MAX_BYTES): a large resource flows.
message.max.bytes=$KAFKA_BROKER_MAX_BYTES
replica.fetch.max.bytes=$KAFKA_BROKER_MAX_BYTES
EOF
        log4j2_config "$KAFKA_HOME/log4j2.xml" "$log" \
            '    <Logger name="kafka.request.logger" level="WARN"/>'
        if [[ ! -f $KAFKA_HOME/data/meta.properties ]]; then
            "$JAVA_BIN" -cp "$KAFKA_LIB/*" -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.xml" \
                kafka.tools.StorageTool format -t "$("$PY" "$ROOT/infra/probe.py" cluster-id)" \
                -c "$props" >"$LOGS/kafka-format.log" 2>&1 ||
                die "Formatting Kafka's storage in $KAFKA_HOME/data failed (see $LOGS/kafka-format.log): remove that folder and run make start again."
            note="storage formatted, "
        fi
        spawn kafka "$LOGS/kafka.out" "$JAVA_BIN" -Xms256m -Xmx512m \
            -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.xml" -Dkafka.logs.dir="$LOGS" \
            -cp "$KAFKA_LIB/*" kafka.Kafka "$props"
        pid=$(cat "$PIDS/kafka.pid")
        note+="started (pid $pid)"
    fi
    wait_ready Kafka "$pid" "$log" \
        "$PY" "$ROOT/infra/probe.py" kafka --bootstrap "127.0.0.1:$KAFKA_PORT" --timeout 60 --pid "$pid"
    STEP_RESULT="$note"
}

topics_create() {
    # shellcheck disable=SC2046
    STEP_RESULT="$("$PY" "$ROOT/infra/probe.py" topics --bootstrap "127.0.0.1:$KAFKA_PORT" \
        --partitions "$KAFKA_TOPIC_PARTITIONS" $(topics))" ||
        die "Could not create the topics $(topics) on 127.0.0.1:$KAFKA_PORT (see $LOGS/kafka.log): check that Kafka runs (make status), then run make start again."
}

# The SCRAM user of the SASL listener: its password generated once into the state folder
# (mode 600, never printed, never on a command line), given to Kafka at every start.
kafka_scram() {
    local dir note=""
    dir=$(dirname "$KAFKA_SASL_PASSWORD_FILE")
    mkdir -p "$dir"
    chmod 700 "$dir"
    if [[ ! -s $KAFKA_SASL_PASSWORD_FILE ]]; then
        (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))' \
            >"$KAFKA_SASL_PASSWORD_FILE.tmp") &&
            mv "$KAFKA_SASL_PASSWORD_FILE.tmp" "$KAFKA_SASL_PASSWORD_FILE" ||
            die "Could not write $KAFKA_SASL_PASSWORD_FILE: check that $dir is writable, then run make start again."
        note="password generated, "
    fi
    chmod 600 "$KAFKA_SASL_PASSWORD_FILE"
    "$PY" "$ROOT/infra/probe.py" scram-user --bootstrap "127.0.0.1:$KAFKA_PORT" \
        --sasl-bootstrap "127.0.0.1:$KAFKA_SASL_PORT" --user "$KAFKA_SCRAM_USER" \
        --password-file "$KAFKA_SASL_PASSWORD_FILE" >/dev/null ||
        die "Could not give Kafka's SASL listener (127.0.0.1:$KAFKA_SASL_PORT) its SCRAM user $KAFKA_SCRAM_USER (see $LOGS/kafka.log): run make stop and make start again."
    STEP_RESULT="${note}user $KAFKA_SCRAM_USER, SCRAM-SHA-512 on 127.0.0.1:$KAFKA_SASL_PORT"
}

# --- Kafka Connect -------------------------------------------------------------------------
# connect_kafka_properties: the worker's Kafka client settings (its own, its connectors'
# producers and consumers, its admin client): the SASL listener and the stack's SCRAM user
# when KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT (the password from Connect's environment,
# never in the file), else the PLAINTEXT listener.
connect_kafka_properties() {
    local prefix
    if [[ $KAFKA_SECURITY_PROTOCOL != SASL_PLAINTEXT ]]; then
        printf 'bootstrap.servers=127.0.0.1:%s\n' "$KAFKA_PORT"
        return 0
    fi
    printf 'bootstrap.servers=127.0.0.1:%s\n' "$KAFKA_SASL_PORT"
    for prefix in "" producer. consumer. admin.; do
        printf '%ssecurity.protocol=SASL_PLAINTEXT\n' "$prefix"
        printf '%ssasl.mechanism=SCRAM-SHA-512\n' "$prefix"
        # shellcheck disable=SC2016  # ${env:...} is Connect's, not the shell's
        printf '%ssasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="${env:KAFKA_SASL_PASSWORD}";\n' \
            "$prefix" "$KAFKA_SCRAM_USER"
    done
}

connect_start() {
    local pid note="" props="$KAFKA_HOME/connect-distributed.properties" log="$LOGS/connect.log" rolled
    # Connect gets the stack's Kafka credentials (KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT).
    local -x KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-}"
    local -x KAFKA_SECURITY_PROTOCOL="${KAFKA_SECURITY_PROTOCOL:-PLAINTEXT}"
    local -x KAFKA_SASL_MECHANISM="${KAFKA_SASL_MECHANISM:-}"
    local -x KAFKA_SASL_USERNAME="${KAFKA_SASL_USERNAME:-}"
    local -x KAFKA_SASL_PASSWORD="${KAFKA_SASL_PASSWORD:-}"
    pid=$(running connect "$KAFKA_CONNECT_PORT")
    if [[ -n $pid ]]; then
        note="reused (pid $pid)"
    else
        kafka_clients
        as_service
        {
            echo "# Written by infra/start.sh at every start. Connect keeps its state in these topics."
            connect_kafka_properties
        } >"$props"
        cat >>"$props" <<EOF
group.id=${KAFKA_TOPIC_PREFIX}fhir-river-connect
listeners=http://127.0.0.1:$KAFKA_CONNECT_PORT
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$KAFKA_CONNECT_PORT
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter.schemas.enable=false
config.storage.topic=${KAFKA_TOPIC_PREFIX}connect-configs
offset.storage.topic=${KAFKA_TOPIC_PREFIX}connect-offsets
status.storage.topic=${KAFKA_TOPIC_PREFIX}connect-status
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=5
status.storage.partitions=1
offset.flush.interval.ms=1000
plugin.path=$PLUGINS
plugin.discovery=service_load
# Secrets in connector configs: \${env:NAME} is read from Connect's environment.
config.providers=env
config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider
# Lets a connector set its own producer/consumer settings (large CSV files).
connector.client.config.override.policy=All
# A source row as large as KAFKA_MESSAGE_MAX_BYTES flows (the broker takes it), compressed.
producer.max.request.size=$KAFKA_MESSAGE_MAX_BYTES
producer.compression.type=lz4
EOF
        # Camel logs the SFTP password at INFO (the route's URI): keep it at WARN.
        log4j2_config "$KAFKA_HOME/connect-log4j2.xml" "$log" \
            '    <Logger name="org.apache.camel" level="WARN"/>
    <Logger name="org.apache.camel.kafkaconnector" level="WARN"/>
    <Logger name="org.reflections" level="ERROR"/>'
        # Where Connect reaches the sources: ${env:POSTGRES_HOST}, ${env:SFTP_HOST} in
        # kafka_connect_connectors/sources (the other variables are exported by load_settings).
        export POSTGRES_HOST="${POSTGRES_HOST:-127.0.0.1}" SFTP_HOST="${SFTP_HOST:-127.0.0.1}"
        # Connect runs as SERVICE_USER: it writes its logs, nothing else (its state is in
        # its topics); it reads its properties, the Kafka jars and the plugins.
        service_log "$LOGS/connect.out" "$log"
        for rolled in "$log".{1,2,3}; do
            [[ ! -e $rolled ]] || chown "$SERVICE_USER:$SERVICE_USER" "$rolled"
        done
        spawn connect "$LOGS/connect.out" "${AS_SERVICE[@]}" "$JAVA_BIN" -Xms256m -Xmx768m \
            -Dlog4j2.configurationFile="$KAFKA_HOME/connect-log4j2.xml" -Dkafka.logs.dir="$LOGS" \
            -cp "$KAFKA_LIB/*" org.apache.kafka.connect.cli.ConnectDistributed "$props"
        pid=$(cat "$PIDS/connect.pid")
        note="started (pid $pid)"
    fi
    wait_ready "Kafka Connect" "$pid" "$log" "$PY" "$ROOT/infra/probe.py" http \
        --url "http://127.0.0.1:$KAFKA_CONNECT_PORT/connector-plugins" --timeout 120 --pid "$pid"
    STEP_RESULT="$note"
}

# --- SFTP (OpenSSH) ------------------------------------------------------------------------
SFTP_GECOS="FHIR River local stack SFTP"

sftp_user() {
    if ! id -u "$SFTP_USER" >/dev/null 2>&1; then
        useradd --no-create-home --home-dir / --shell /usr/sbin/nologin --user-group \
            --comment "$SFTP_GECOS" "$SFTP_USER" >/dev/null 2>&1 ||
            die "Could not create the SFTP user $SFTP_USER with useradd: set SFTP_USER in .env to a valid new user name, then run make start again."
    elif [[ $(getent passwd "$SFTP_USER" | cut -d: -f5) != "$SFTP_GECOS" ]]; then
        die "SFTP_USER=$SFTP_USER is an existing account that the stack did not create, and the stack would change its password: set SFTP_USER in .env to another name, then run make start again."
    fi
    printf '%s:%s\n' "$SFTP_USER" "$SFTP_PASSWORD" | chpasswd ||
        die "Could not set the password of the SFTP user $SFTP_USER with chpasswd: check SFTP_PASSWORD in .env, then run make start again."
}

sftp_start() {
    local pid note="" cfg="$SFTP_HOME/sshd_config" keys="$SFTP_HOME/hostkeys" d
    sftp_user
    # The chroot and each folder above it must be root-owned and not group/other-writable:
    # sshd reaches it through a root-owned symlink outside /tmp.
    mkdir -p "$SFTP_ROOT/upload" "$keys/etc/ssh"
    chown root:root "$SFTP_HOME" "$SFTP_ROOT" "$SFTP_ROOT/upload"
    chmod 755 "$SFTP_HOME" "$SFTP_ROOT" "$SFTP_ROOT/upload"
    for d in data error finished; do
        mkdir -p "$SFTP_ROOT/upload/$d"
        chown "$SFTP_USER:" "$SFTP_ROOT/upload/$d"
        chmod 755 "$SFTP_ROOT/upload/$d"
    done
    if [[ -e $SFTP_CHROOT_LINK && ! -L $SFTP_CHROOT_LINK ]]; then
        die "$SFTP_CHROOT_LINK exists and is not the stack's symlink: move it away or set SFTP_CHROOT_LINK to another path, then run make start again."
    fi
    mkdir -p "$(dirname "$SFTP_CHROOT_LINK")"
    [[ $(readlink "$SFTP_CHROOT_LINK" 2>/dev/null) = "$SFTP_ROOT" ]] || ln -sfn "$SFTP_ROOT" "$SFTP_CHROOT_LINK"
    mkdir -p /run/sshd
    chmod 755 /run/sshd

    pid=$(running sshd "$SFTP_PORT")
    if [[ -n $pid ]]; then
        STEP_RESULT="reused (pid $pid)"
        return 0
    fi
    [[ -f $keys/etc/ssh/ssh_host_ed25519_key ]] || {
        ssh-keygen -A -f "$keys" >/dev/null 2>&1
        note="host keys made, "
    }
    cat >"$cfg" <<EOF
# Written by infra/start.sh at every start: an SFTP-only server for the local stack.
Port $SFTP_PORT
ListenAddress 127.0.0.1
HostKey $keys/etc/ssh/ssh_host_ed25519_key
HostKey $keys/etc/ssh/ssh_host_ecdsa_key
HostKey $keys/etc/ssh/ssh_host_rsa_key
PidFile none
UsePAM yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $SFTP_USER
PrintMotd no
# SFTP only: no shell, command, tty, forwarding of any kind (TCP, X11, agent, unix
# sockets, tunnels), no user rc or environment.
DisableForwarding yes
AllowTcpForwarding no
AllowStreamLocalForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTunnel no
GatewayPorts no
PermitTTY no
PermitUserRC no
PermitUserEnvironment no
Subsystem sftp internal-sftp
Match User $SFTP_USER
    ChrootDirectory $SFTP_CHROOT_LINK
    ForceCommand internal-sftp
    DisableForwarding yes
    PermitTTY no
EOF
    /usr/sbin/sshd -t -f "$cfg" >"$LOGS/sshd-check.log" 2>&1 ||
        die "sshd refused its configuration $cfg (see $LOGS/sshd-check.log): fix what it says, then run make start again."
    spawn sshd "$LOGS/sshd.out" /usr/sbin/sshd -D -f "$cfg" -E "$LOGS/sshd.log"
    pid=$(cat "$PIDS/sshd.pid")
    for _ in $(seq 100); do
        listening "$SFTP_PORT" && break
        alive "$pid" || die "sshd exited while starting: see $LOGS/sshd.log, fix what it says, then run make start again."
        sleep 0.05
    done
    listening "$SFTP_PORT" || die "sshd did not listen on 127.0.0.1:$SFTP_PORT within 5 s: see $LOGS/sshd.log."
    STEP_RESULT="${note}started (pid $pid)"
}

step "PostgreSQL" postgres_start
step "Kafka (KRaft)" kafka_start
step "Topics" topics_create
step "Kafka SASL/SCRAM user" kafka_scram
step "Kafka Connect" connect_start
step "SFTP (OpenSSH)" sftp_start
step "Keycloak (OpenID Connect)" keycloak_start
if want_ferretdb; then step "FerretDB $FERRETDB_VERSION" ferretdb_start; fi
if want_hapi; then step "HAPI FHIR $HAPI_VERSION" hapi_start; fi
hapi_target # WITH_HAPI=1: the services load into it
# api, extractor, transformer, loader (services_start, infra/lib.sh): one that exits at
# start stops make start, with the last line of its log.
step "FHIR River services" services_start
die_if_services_exited
step "Prometheus" prometheus_start

say "The stack is up in $(elapsed "$T0")s:"
bash "$ROOT/infra/status.sh" --where
