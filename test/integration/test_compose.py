"""docker-compose.yml, checked without a Docker engine.

`docker-compose config` (Debian's docker-compose package) validates and resolves
the file; the tests then read the resolved stack and check that it holds the parts
docs/architecture.md describes (Kafka in KRaft mode, Connect with its two plugins, PostgreSQL
with the MIMIC schema, MongoDB as the FHIR store, SFTP, Keycloak, the four services
from one image) wired in the right order, and that every ${VAR} it uses has a
default or a line in .env.example, but the secrets: those have no default at all
(${VAR:?...}), Compose refuses to run without them, and .env.example's "Docker
Compose" block names them. Only the API and Keycloak are published; each service
logs in to the databases with a role of its own. The `hapi` profile adds HAPI FHIR
(hapiproject/hapi) as a FHIR server target, with the local server's settings, its own
database role and the host's loopback only; nothing else is in a profile. Compose
always runs here with a clean environment and an explicit env file, so that a
developer's `.env` or shell cannot change the result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from river import events

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
CONNECT_DIR = ROOT / "docker" / "connect"

DOCKER_POSTGRES = ROOT / "docker" / "postgres"
DOCKER_MONGO = ROOT / "docker" / "mongo"
DOCKER_HAPI = ROOT / "docker" / "hapi"
LOCAL_HAPI = ROOT / "infra" / "hapi"
REALM_FILE = ROOT / "infra" / "keycloak" / "fhir-river-realm.json"
CDC_CONNECTOR = ROOT / "kafka_connect_connectors" / "sources" / "mimic-postgres-cdc.json"

APP_SERVICES = ("api", "extractor", "transformer", "loader")
STACK = {"kafka", "connect", "postgres", "mongo", "sftp", "keycloak", *APP_SERVICES,
         "prometheus", "grafana"}  # fmt: skip
TOPICS = set(events.TOPICS)
# What a Compose user must set (.env.example, "Docker Compose"): no default anywhere.
SECRETS = {
    "POSTGRES_SUPERUSER_PASSWORD",
    "SOURCE_READER_PASSWORD",
    "SOURCE_CDC_PASSWORD",
    "SOURCE_OWNER_PASSWORD",
    "STORE_OWNER_PASSWORD",
    "MONGO_INITDB_ROOT_PASSWORD",
    "SFTP_UPLOAD_PASSWORD",
    "KC_BOOTSTRAP_ADMIN_PASSWORD",
    "RIVER_SCRIPTS_CLIENT_SECRET",
    "GRAFANA_ADMIN_PASSWORD",
    "HAPI_DB_PASSWORD",
}
# The passwords of the services' database roles, which PostgreSQL's init script sets.
ROLE_SECRETS = (
    "SOURCE_READER_PASSWORD",
    "SOURCE_CDC_PASSWORD",
    "SOURCE_OWNER_PASSWORD",
    "STORE_OWNER_PASSWORD",
)
# Credentials of an optional outside service, empty unless it is used: no password to
# guess, so an empty default is allowed.
OPTIONAL_CREDENTIALS = {"PYROG_PASSWORD", "FHIR_SERVER_CLIENT_SECRET", "FHIR_SERVER_PASSWORD"}
# The values the tests give the secrets (letters, digits, -: fit for URLs).
SECRET_VALUES = {name: f"test-{name.lower().replace('_', '-')}" for name in SECRETS}
# Only these reach the host: (published, target) ports; the last three on its loopback
# only (hapi with its profile on).
PUBLISHED = {
    "api": {("3000", "3000")},
    "keycloak": {("8180", "8080")},
    "prometheus": {("9090", "9090")},
    "grafana": {("3001", "3000")},
    "hapi": {("8090", "8080")},
}
LOOPBACK_ONLY = ("prometheus", "grafana", "hapi")
# Services in a profile (off unless asked for: docker compose --profile NAME); the others
# always run.
PROFILES = {"hapi": ["hapi"]}
# Where each service serves its Prometheus metrics (river.settings.Settings' defaults).
METRICS_PORTS = {"api": 9100, "extractor": 9101, "transformer": 9102, "loader": 9103}
PROMETHEUS_CONFIG = ROOT / "docker" / "prometheus" / "prometheus.yml"
ALERT_RULES = ROOT / "infra" / "prometheus" / "alerts.yml"
GRAFANA = ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "fhir-river.json"
ISSUER = "http://localhost:8180/realms/fhir-river"
JWKS_URL = "http://keycloak:8080/realms/fhir-river/protocol/openid-connect/certs"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
UNSET_WARNING = re.compile(r"variable is not set", re.IGNORECASE)


# --------------------------------------------------------------------------- #
# Running docker-compose
# --------------------------------------------------------------------------- #
def compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "the docker-compose binary is missing: install it (apt-get install docker-compose,"
            " or make install) to check docker-compose.yml"
        )
    return binary


def run_compose(*args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    """docker-compose with this checkout's file, `env_file` for interpolation and no
    other settings (a clean environment: only PATH and HOME)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    argv = [
        compose_binary(),
        "--project-directory", str(ROOT),
        "--env-file", str(env_file),
        "-f", str(COMPOSE_FILE),
        *args,
    ]  # fmt: skip
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def yaml_to_data(text: str) -> Any:
    """Parse YAML with PyYAML: ours if installed, else the one docker-compose (v1, Python)
    runs with, found through its script's #! line."""
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        return yaml.safe_load(text)
    with open(compose_binary(), "rb") as script:
        first = script.readline().decode("utf-8", "replace").strip()
    if not first.startswith("#!"):
        pytest.fail("cannot parse `docker-compose config`: add pyyaml to the dev dependencies")
    interpreter = first[2:].split()
    if Path(interpreter[0]).name == "env":
        interpreter = interpreter[1:]
    code = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    done = subprocess.run(
        [*interpreter, "-c", code], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"cannot parse docker-compose's YAML: {done.stderr}"
    return json.loads(done.stdout)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip().strip("'\"")
    return values


def env_example_block(heading: str) -> str:
    """The lines of .env.example under `# --- <heading> ---`, up to the next heading."""
    text = ENV_EXAMPLE.read_text()
    match = re.search(rf"^# --- {re.escape(heading)} -+\n(.*?)(?=^# --- |\Z)", text, re.M | re.S)
    assert match, f".env.example has no block {heading!r}"
    return match.group(1)


def compose_variables() -> list[tuple[str, str, str]]:
    """(name, operator, default or message) of every ${VAR} of docker-compose.yml
    outside comments."""
    lines = COMPOSE_FILE.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    text = text.replace("$$", "")  # an escaped $, not a variable
    return VARIABLE.findall(text)


def write_env_file(path: Path, *, with_example: bool, secrets: set[str]) -> Path:
    """An env file: .env.example's lines (or none), then the given secrets' test values."""
    lines = [ENV_EXAMPLE.read_text()] if with_example else []
    lines += [f"{name}={SECRET_VALUES[name]}" for name in sorted(secrets)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose")


@pytest.fixture(scope="module")
def empty_env_file(env_dir: Path) -> Path:
    return write_env_file(env_dir / "empty.env", with_example=False, secrets=set())


@pytest.fixture(scope="module")
def secrets_env_file(env_dir: Path) -> Path:
    """.env.example plus the secrets a Compose user sets in .env."""
    return write_env_file(env_dir / "secrets.env", with_example=True, secrets=SECRETS)


def resolve(env_file: Path, *options: str) -> dict[str, Any]:
    """The resolved docker-compose.yml, as data; `options` go before `config`
    (--profile NAME)."""
    # Compose v2 prints JSON; v1 does not know --format (it prints its usage, exit 0).
    done = run_compose(*options, "config", "--format", "json", env_file=env_file)
    if done.returncode == 0 and done.stdout.lstrip().startswith("{"):
        return json.loads(done.stdout)
    done = run_compose(*options, "config", env_file=env_file)  # Compose v1: YAML only
    assert done.returncode == 0, done.stderr
    return yaml_to_data(done.stdout)


@pytest.fixture(scope="module")
def stack(secrets_env_file: Path) -> dict[str, Any]:
    """The resolved docker-compose.yml (.env.example's values and the secrets), as data.
    Compose v1 lists the services of every profile, v2 only those of no profile."""
    return resolve(secrets_env_file)


@pytest.fixture(scope="module")
def hapi_stack(secrets_env_file: Path) -> dict[str, Any]:
    """The same, with the `hapi` profile on."""
    return resolve(secrets_env_file, "--profile", "hapi")


# --------------------------------------------------------------------------- #
# Reading the resolved services (v1 and v2 print some keys differently)
# --------------------------------------------------------------------------- #
def service(stack: dict[str, Any], name: str) -> dict[str, Any]:
    assert name in stack["services"], f"docker-compose.yml has no service {name!r}"
    return stack["services"][name]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def depends_on(svc: dict[str, Any]) -> dict[str, str]:
    """Service -> condition."""
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def ports(svc: dict[str, Any]) -> set[tuple[str, str]]:
    """(published, target) pairs."""
    pairs = set()
    for port in svc.get("ports") or []:
        if isinstance(port, dict):
            pairs.add((str(port.get("published", "")), str(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            pairs.add((parts[-2] if len(parts) > 1 else "", parts[-1]))
    return pairs


def mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) pairs: host path or volume name, path in the container."""
    pairs = []
    for volume in svc.get("volumes") or []:
        if isinstance(volume, dict):
            pairs.append((str(volume.get("source", "")), str(volume["target"])))
        else:
            parts = str(volume).split(":")
            pairs.append((parts[0], parts[1]))
    return pairs


def host_ips(svc: dict[str, Any]) -> set[str]:
    """The host addresses a service's ports are published on ("" for all)."""
    found = set()
    for port in svc.get("ports") or []:
        if isinstance(port, dict):
            found.add(str(port.get("host_ip", "")))
        else:
            parts = str(port).split("/")[0].split(":")
            found.add(parts[0] if len(parts) == 3 else "")
    return found


def command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def url_login(url: str) -> tuple[str, str]:
    """(user, password) of a database URL."""
    parts = urlsplit(url)
    return unquote(parts.username or ""), unquote(parts.password or "")


def build_context(svc: dict[str, Any]) -> Path:
    build = svc.get("build")
    assert build, "the service is not built from this checkout"
    context = build if isinstance(build, str) else build["context"]
    return (ROOT / context).resolve()


# --------------------------------------------------------------------------- #
# The file resolves
# --------------------------------------------------------------------------- #
def test_config_resolves_with_the_secrets_set(secrets_env_file: Path) -> None:
    done = run_compose("config", "--quiet", env_file=secrets_env_file)
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    assert not UNSET_WARNING.search(done.stderr), done.stderr


def test_config_resolves_with_nothing_but_the_secrets(env_dir: Path) -> None:
    """No other setting: every other variable falls back to its default, none is blank."""
    env_file = write_env_file(env_dir / "only-secrets.env", with_example=False, secrets=SECRETS)
    done = run_compose("config", "--quiet", env_file=env_file)
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    assert not UNSET_WARNING.search(done.stderr), done.stderr


@pytest.mark.parametrize("env", ["empty", "env.example"])
def test_config_refuses_to_run_without_the_secrets(env: str, empty_env_file: Path) -> None:
    """No secret has a default: neither nothing at all nor .env.example (whose local-stack
    passwords are not Compose's) lets Compose resolve the file."""
    done = run_compose(
        "config", "--quiet", env_file=empty_env_file if env == "empty" else ENV_EXAMPLE
    )
    assert done.returncode != 0, "docker-compose config resolved the file without any secret"
    named = re.findall(r"set (\w+) in \.env", done.stderr)
    assert named and set(named) <= SECRETS, done.stderr


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_each_secret_is_required_by_name(missing: str, env_dir: Path) -> None:
    env_file = write_env_file(
        env_dir / f"without-{missing}.env", with_example=True, secrets=SECRETS - {missing}
    )
    done = run_compose("config", "--quiet", env_file=env_file)
    assert done.returncode != 0, f"docker-compose config resolved the file without {missing}"
    assert f"set {missing} in .env" in done.stderr, done.stderr


def test_no_password_has_a_default() -> None:
    """Every password or secret Compose reads is ${VAR:?set VAR in .env}; the set is
    SECRETS, each listed, empty and commented, in .env.example's "Docker Compose"
    block and given no value anywhere else in .env.example."""
    required = set()
    for name, operator, rest in compose_variables():
        if operator in (":?", "?"):
            assert operator == ":?", f"${{{name}?...}}: an empty value would pass, use :?"
            assert rest == f"set {name} in .env", f"${{{name}:?{rest}}}: say `set {name} in .env`"
            required.add(name)
        elif re.search(r"PASSWORD|SECRET", name):
            assert name in OPTIONAL_CREDENTIALS and operator in ("-", ":-") and rest == "", (
                f"${{{name}}} is a secret with a default (or none): make it ${{{name}:?set"
                f" {name} in .env}}"
            )
    assert required == SECRETS
    block = env_example_block("Docker Compose")
    documented = set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=$", block, re.M))
    assert documented == SECRETS, "the Docker Compose block of .env.example must list the secrets"
    settings = env_example()
    assert not SECRETS & set(settings), "a Compose secret has a value in .env.example"


def test_every_variable_has_a_default_or_is_in_env_example() -> None:
    settings = env_example()
    used = compose_variables()
    assert used, "docker-compose.yml reads no setting at all"
    for name, operator, default in used:
        if operator == ":?":
            continue  # a secret: test_no_password_has_a_default
        has_default = operator in ("-", ":-")
        assert has_default or name in settings, (
            f"${{{name}}} has no default and is not in .env.example"
        )
        if has_default and name in settings:
            assert default == settings[name], (
                f"${{{name}:-{default}}}: the default is not .env.example's {settings[name]!r}"
            )


def test_no_container_is_given_a_password_it_was_not_meant_to_have(
    stack: dict[str, Any],
) -> None:
    """Every password or secret in a container's environment is one of the secrets (or
    blank): none comes from a default, nor from .env.example's local-stack values
    through env_file."""
    allowed = {"", *SECRET_VALUES.values()}
    for name, svc in stack["services"].items():
        for key, value in environment(svc).items():
            if re.search(r"PASSWORD|SECRET", key):
                assert value in allowed, f"{name} has {key}={value!r}, not a secret of .env"


# --------------------------------------------------------------------------- #
# The stack
# --------------------------------------------------------------------------- #
def test_every_part_of_the_stack_is_there(stack: dict[str, Any]) -> None:
    missing = STACK - set(stack["services"])
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


def test_depends_on_names_services_that_can_satisfy_it(stack: dict[str, Any]) -> None:
    services = stack["services"]
    for name, svc in services.items():
        for target, condition in depends_on(svc).items():
            assert target in services, f"{name} depends on {target}, which does not exist"
            if condition == "service_healthy":
                assert services[target].get("healthcheck") or target == "connect", (
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
                )
            if condition == "service_completed_successfully":
                assert str(services[target].get("restart", "no")) == "no", (
                    f"{name} waits for the one-shot {target}, which restarts"
                )


def test_mounted_files_of_the_checkout_exist(stack: dict[str, Any]) -> None:
    for name, svc in stack["services"].items():
        for source, _ in mounts(svc):
            path = Path(source)
            if path.is_absolute() and path.is_relative_to(ROOT):
                assert path.exists(), f"{name} mounts {path.relative_to(ROOT)}, which is missing"


def test_kafka_runs_in_kraft_mode(stack: dict[str, Any]) -> None:
    kafka = service(stack, "kafka")
    assert kafka["image"].startswith("apache/kafka:")
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert env["CLUSTER_ID"]
    assert not any("ZOOKEEPER" in key for key in env)
    assert "zookeeper" not in stack["services"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "INTERNAL://kafka:19092", (
        "Kafka is for the Compose network only: no listener advertised to the host"
    )
    assert "19092" in [str(p) for p in kafka.get("expose") or []]
    assert kafka.get("healthcheck"), "the services wait for Kafka to be healthy"


def test_one_size_limit_for_the_services_the_broker_and_connect(stack: dict[str, Any]) -> None:
    """KAFKA_MESSAGE_MAX_BYTES is one decision: the broker takes it plus the framing
    the services' producers allow for, Connect's producers the same events."""
    from adapters.kafka import FRAMING
    from river.settings import Settings

    limit = Settings.kafka_message_max_bytes
    for name in APP_SERVICES:
        assert environment(service(stack, name))["KAFKA_MESSAGE_MAX_BYTES"] == str(limit), name
    broker = environment(service(stack, "kafka"))
    assert broker["KAFKA_MESSAGE_MAX_BYTES"] == str(limit + FRAMING)
    assert broker["KAFKA_REPLICA_FETCH_MAX_BYTES"] == str(limit + FRAMING)
    connect = environment(service(stack, "connect"))
    assert connect["CONNECT_PRODUCER_MAX_REQUEST_SIZE"] == str(limit)
    assert env_example()["KAFKA_MESSAGE_MAX_BYTES"] == str(limit)


def test_topics_are_created_with_three_partitions(stack: dict[str, Any]) -> None:
    topics = service(stack, "topics")
    env = environment(topics)
    assert set(env["TOPICS"].split()) == TOPICS
    assert env["PARTITIONS"] == "3"
    assert env["BOOTSTRAP"] == "kafka:19092"
    assert depends_on(topics) == {"kafka": "service_healthy"}
    script = (ROOT / "docker" / "kafka" / "create-topics.sh").read_text()
    assert "--if-not-exists" in script and "--partitions" in script


def test_the_four_services_come_from_one_image(stack: dict[str, Any]) -> None:
    images = set()
    for name in (*APP_SERVICES, "seed"):
        svc = service(stack, name)
        assert build_context(svc) == ROOT, f"{name} is not built from ./Dockerfile"
        images.add(svc["image"])
    assert len(images) == 1, f"the services use several images: {sorted(images)}"
    # python -m api: gunicorn, and its workers' metrics on METRICS_PORT_API (a bare
    # `gunicorn api.app:create_app()` serves none).
    assert command(service(stack, "api")) == ["python", "-m", "api"]
    assert re.search(r'^CMD \["python", "-m", "api"\]', (ROOT / "Dockerfile").read_text(), re.M)
    for name in ("extractor", "transformer", "loader"):
        assert command(service(stack, name)) == ["python", "-m", name]


def test_api_publishes_port_3000(stack: dict[str, Any]) -> None:
    api = service(stack, "api")
    assert ("3000", "3000") in ports(api)
    env = environment(api)
    assert (env["API_HOST"], env["API_PORT"]) == ("0.0.0.0", "3000")
    assert api.get("healthcheck")


@pytest.mark.parametrize("profile", ["none", "hapi"])
def test_only_the_api_and_keycloak_are_published(
    profile: str, stack: dict[str, Any], hapi_stack: dict[str, Any]
) -> None:
    """Kafka, Connect's REST API, PostgreSQL, MongoDB, SFTP...: the Compose network only;
    Prometheus, Grafana and the `hapi` profile's HAPI FHIR on the host's loopback only."""
    resolved = hapi_stack if profile == "hapi" else stack
    for name, svc in resolved["services"].items():
        assert ports(svc) == PUBLISHED.get(name, set()), (
            f"{name} publishes {sorted(ports(svc))}: only the API (3000) and Keycloak's login"
            " page (8180) reach the host, Prometheus, Grafana and HAPI its loopback; use"
            " `expose:`"
        )
    for name in LOOPBACK_ONLY:
        if name in resolved["services"]:  # hapi: with its profile (v1 lists it anyway)
            assert host_ips(service(resolved, name)) == {"127.0.0.1"}, (
                f"{name} must be published on 127.0.0.1 only"
            )
    if profile == "hapi":
        assert "hapi" in resolved["services"]


def test_services_reach_each_other_by_name_and_store_in_mongodb(stack: dict[str, Any]) -> None:
    assert service(stack, "mongo")["image"].startswith("mongo:")
    for name in APP_SERVICES:
        env = environment(service(stack, name))
        store = urlsplit(env["FHIR_STORE_URL"])
        assert (store.scheme, store.hostname, store.port) == ("mongodb", "mongo", 27017), name
        assert store.path == "/fhirstore", name
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092", name
        assert env["KAFKA_CONNECT_URL"] == "http://connect:8083", name
        # Only the extractor and the API read the source.
        if name in ("api", "extractor"):
            assert "@postgres:5432/mimic" in env["SOURCE_DB_URL"], name
        else:
            assert not env.get("SOURCE_DB_URL"), f"{name} needs no access to the source"
        # .env.example's local-stack addresses (env_file) are all overridden.
        assert "127.0.0.1" not in " ".join(env.values()), f"{name} points at 127.0.0.1"


def test_the_api_trusts_the_compose_keycloak(stack: dict[str, Any]) -> None:
    """Tokens say the issuer browsers and the CLI reach (KC_HOSTNAME, localhost:8180);
    the API fetches the keys by the service's name. Set in `environment:`, over
    .env.example's OIDC_ISSUER of the local stack (127.0.0.1), for every service."""
    keycloak = service(stack, "keycloak")
    kc_env = environment(keycloak)
    realm = json.loads(REALM_FILE.read_text())["realm"]
    assert f"{kc_env['KC_HOSTNAME']}/realms/{realm}" == ISSUER
    ((_, target),) = ports(keycloak)
    assert JWKS_URL.startswith(f"http://keycloak:{target}/realms/{realm}/")
    assert env_example()["OIDC_ISSUER"] != ISSUER  # so Compose must override it
    for name in APP_SERVICES:
        env = environment(service(stack, name))
        assert env["API_AUTH"] == "oidc", name
        assert env["OIDC_ISSUER"] == ISSUER, name
        assert env["OIDC_JWKS_URL"] == JWKS_URL, name
        assert env["OIDC_AUDIENCE"] == "fhir-river", name
    assert depends_on(service(stack, "api")).get("keycloak") == "service_healthy"


def test_keycloak_imports_the_local_stacks_realm(stack: dict[str, Any]) -> None:
    keycloak = service(stack, "keycloak")
    version = re.search(r"KEYCLOAK_VERSION:=([\d.]+)", (ROOT / "infra" / "keycloak.sh").read_text())
    assert version, "infra/keycloak.sh names no KEYCLOAK_VERSION"
    assert keycloak["image"] == f"quay.io/keycloak/keycloak:{version.group(1)}"
    cmd = command(keycloak)
    assert cmd[0] in ("start-dev", "start") and "--import-realm" in cmd
    realm_mounts = [target for source, target in mounts(keycloak) if Path(source) == REALM_FILE]
    assert realm_mounts, "keycloak must mount infra/keycloak/fhir-river-realm.json"
    assert realm_mounts[0].startswith("/opt/keycloak/data/import/")
    env = environment(keycloak)
    assert env["KC_BOOTSTRAP_ADMIN_PASSWORD"] == SECRET_VALUES["KC_BOOTSTRAP_ADMIN_PASSWORD"]
    assert env["RIVER_SCRIPTS_CLIENT_SECRET"] == SECRET_VALUES["RIVER_SCRIPTS_CLIENT_SECRET"]
    assert env["KC_HEALTH_ENABLED"] == "true"
    assert env["KC_HOSTNAME_BACKCHANNEL_DYNAMIC"] == "true"
    assert "/health/ready" in " ".join(keycloak["healthcheck"]["test"])
    # The realm file holds a placeholder, filled from Keycloak's environment at import.
    clients = {c["clientId"]: c for c in json.loads(REALM_FILE.read_text())["clients"]}
    assert clients["river-scripts"]["secret"] == "${RIVER_SCRIPTS_CLIENT_SECRET}"


def test_mongodb_requires_authentication(stack: dict[str, Any]) -> None:
    mongo = service(stack, "mongo")
    env = environment(mongo)
    assert env["MONGO_INITDB_ROOT_USERNAME"]
    assert env["MONGO_INITDB_ROOT_PASSWORD"] == SECRET_VALUES["MONGO_INITDB_ROOT_PASSWORD"]
    assert env["STORE_OWNER_PASSWORD"] == SECRET_VALUES["STORE_OWNER_PASSWORD"]
    init = {Path(source): target for source, target in mounts(mongo)}
    script = DOCKER_MONGO / "10-fhir-river.js"
    assert init.get(script, "").startswith("/docker-entrypoint-initdb.d/")
    text = script.read_text()
    assert "createUser" in text and '"river_store"' in text
    assert 'role: "readWrite"' in text and "process.env.STORE_OWNER_PASSWORD" in text
    for name in APP_SERVICES:
        url = environment(service(stack, name))["FHIR_STORE_URL"]
        assert url_login(url) == ("river_store", SECRET_VALUES["STORE_OWNER_PASSWORD"]), name
        assert parse_qs(urlsplit(url).query).get("authSource") == ["fhirstore"], name


def test_each_service_logs_in_with_its_own_role(stack: dict[str, Any]) -> None:
    """Read-only on the source for the extractor and the API, replication for Debezium,
    the tables' owner for the seed, the store's role for the store: never a superuser."""
    reader = ("river_source_reader", SECRET_VALUES["SOURCE_READER_PASSWORD"])
    for name in ("api", "extractor"):
        assert url_login(environment(service(stack, name))["SOURCE_DB_URL"]) == reader, name
    seed = environment(service(stack, "seed"))["SOURCE_DB_URL"]
    assert url_login(seed) == ("river_source_owner", SECRET_VALUES["SOURCE_OWNER_PASSWORD"])
    connect = environment(service(stack, "connect"))
    assert (connect["POSTGRES_USER"], connect["POSTGRES_PASSWORD"]) == (
        "river_source_cdc",
        SECRET_VALUES["SOURCE_CDC_PASSWORD"],
    )
    connector = json.loads(CDC_CONNECTOR.read_text())["config"]
    assert connector["database.user"] == "${env:POSTGRES_USER}"
    assert connector["database.password"] == "${env:POSTGRES_PASSWORD}"
    # PostgreSQL makes each role with the password its service is given.
    postgres = environment(service(stack, "postgres"))
    assert postgres["POSTGRES_USER"] == "postgres"
    assert postgres["POSTGRES_PASSWORD"] == SECRET_VALUES["POSTGRES_SUPERUSER_PASSWORD"]
    for secret in ROLE_SECRETS:
        assert postgres[secret] == SECRET_VALUES[secret], secret
    # Nobody logs in as the superuser or MongoDB's root.
    root = environment(service(stack, "mongo"))["MONGO_INITDB_ROOT_USERNAME"]
    for name, svc in stack["services"].items():
        for key, value in environment(svc).items():
            if key.endswith("_URL") and "://" in value and "@" in value:
                assert url_login(value)[0] not in ("postgres", root), f"{name} {key}"


def test_the_roles_are_made_with_least_privilege() -> None:
    roles = (DOCKER_POSTGRES / "10-fhir-river.sh").read_text()
    source = (DOCKER_POSTGRES / "30-fhir-river-source.sh").read_text()
    for role in ("river_source_reader", "river_source_owner", "river_store"):
        assert f"'{role}'" in roles, f"10-fhir-river.sh does not make {role}"
    assert "CREATE ROLE %I LOGIN REPLICATION PASSWORD %L', 'river_source_cdc'" in roles
    for word in ("SUPERUSER", "CREATEDB", "CREATEROLE", "BYPASSRLS"):
        assert word not in roles + source, f"a role is made with {word}"
    for secret in ROLE_SECRETS:  # through psql's environment, not its command line
        assert re.search(rf"^\\getenv \w+ {secret}$", roles, re.M), f"10-fhir-river.sh: {secret}"
    assert "CREATE DATABASE %I OWNER river_store" in roles
    # The readers read, nothing more; the owner owns the tables.
    assert (
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO river_source_reader, river_source_cdc"
        in source
    )
    assert "GRANT SELECT ON TABLES TO river_source_reader, river_source_cdc" in source
    assert not re.search(r"GRANT (?!SELECT|USAGE|CONNECT)[^;]*river_source_(reader|cdc)", source)
    assert "OWNER TO river_source_owner" in source
    assert "REVOKE ALL ON DATABASE %I FROM PUBLIC" in source


def test_debezium_finds_its_publication_ready(stack: dict[str, Any]) -> None:
    """The replication role owns no table, so it cannot create the publication or set
    REPLICA IDENTITY: the init script does both, for the connector's tables, and
    Debezium (filtered mode) finds them as it wants them."""
    connector = json.loads(CDC_CONNECTOR.read_text())["config"]
    assert connector["publication.autocreate.mode"] == "filtered"
    script = (DOCKER_POSTGRES / "30-fhir-river-source.sh").read_text()
    publication = re.search(r"^publication=(\S+)$", script, re.M)
    tables = re.search(r'^cdc_tables="([^"]+)"$', script, re.M)
    assert publication and tables
    assert publication.group(1) == connector["publication.name"]
    listed = re.fullmatch(r"public\\\.\(([\w|]+)\)", connector["table.include.list"])
    assert listed, connector["table.include.list"]
    assert set(tables.group(1).split()) == set(listed.group(1).split("|"))
    assert connector["replica.identity.autoset.values"].endswith(":FULL")
    assert "REPLICA IDENTITY FULL" in script and "CREATE PUBLICATION %I FOR TABLE" in script
    postgres = service(stack, "postgres")
    init = {Path(source): target for source, target in mounts(postgres)}
    schema = init[ROOT / "test" / "utils" / "mimic_schema.sql"]
    assert init[DOCKER_POSTGRES / "30-fhir-river-source.sh"] > schema, (
        "the source's privileges and publication come after the schema"
    )


def test_services_start_after_kafka_and_the_stores(stack: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        deps = depends_on(service(stack, name))
        assert deps.get("kafka") == "service_healthy", name
        assert deps.get("topics") == "service_completed_successfully", name
        assert deps.get("mongo") == "service_healthy", name
        assert deps.get("postgres") == "service_healthy", name
    assert depends_on(service(stack, "connect")).get("kafka") == "service_healthy"


def test_connect_is_built_with_both_plugins(stack: dict[str, Any]) -> None:
    connect = service(stack, "connect")
    assert build_context(connect) == CONNECT_DIR
    assert "8083" in [str(p) for p in connect.get("expose") or []]
    env = environment(connect)
    assert env["BOOTSTRAP_SERVERS"] == "kafka:19092"
    for key in ("GROUP_ID", "CONFIG_STORAGE_TOPIC", "OFFSET_STORAGE_TOPIC", "STATUS_STORAGE_TOPIC"):
        assert env.get(key), f"connect needs {key}"
    assert env["SFTP_HOST"] == "sftp" and env["POSTGRES_HOST"] == "postgres"

    dockerfile = (CONNECT_DIR / "Dockerfile").read_text()
    # Debezium's Connect image ships the Debezium PostgreSQL connector.
    assert re.search(r"quay\.io/debezium/connect:3\.", dockerfile)
    assert "/kafka/connect/camel-kafka-connector" in dockerfile
    assert "CONNECT_CONFIG_PROVIDERS=env" in dockerfile
    assert "org.apache.kafka.common.config.provider.EnvVarConfigProvider" in dockerfile
    assert "CONNECT_LOG4J_LOGGER_ORG_APACHE_CAMEL=WARN" in dockerfile

    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.parse(CONNECT_DIR / "pom.xml").getroot()
    props = {p.tag.split("}")[1]: p.text for p in pom.find("m:properties", ns) or []}
    dependencies = {}
    for dep in pom.iterfind("m:dependencies/m:dependency", ns):
        artifact = dep.findtext("m:artifactId", namespaces=ns)
        version = re.sub(
            r"\$\{([^}]+)\}", lambda m: props[m.group(1)], dep.findtext("m:version", namespaces=ns)
        )
        excluded = {
            x.findtext("m:groupId", namespaces=ns) for x in dep.iterfind(".//m:exclusion", ns)
        }
        dependencies[artifact] = (version, excluded)
    assert dependencies == {
        "camel-kafka-connector": ("0.11.0", {"org.apache.kafka"}),
        "camel-ftp": ("3.11.1", {"org.apache.kafka"}),
        "camel-csv": ("3.11.1", {"org.apache.kafka"}),
    }


def test_postgres_is_logical_with_the_mimic_schema(stack: dict[str, Any]) -> None:
    postgres = service(stack, "postgres")
    assert postgres["image"] == "postgres:15"
    assert "wal_level=logical" in command(postgres)
    env = environment(postgres)
    assert env["POSTGRES_DB"] == "mimic" and env["FHIRSTORE_DB_NAME"] == "fhirstore"
    init = {target: Path(source) for source, target in mounts(postgres)}
    schema = [t for t, s in init.items() if s == ROOT / "test" / "utils" / "mimic_schema.sql"]
    script = [t for t, s in init.items() if s == ROOT / "docker" / "postgres" / "10-fhir-river.sh"]
    assert schema and schema[0].startswith("/docker-entrypoint-initdb.d/")
    assert script and script[0].startswith("/docker-entrypoint-initdb.d/")
    assert script[0] < schema[0], "fhirstore is created before the schema runs"
    assert "CREATE DATABASE" in (ROOT / "docker" / "postgres" / "10-fhir-river.sh").read_text()
    assert "5432" in [str(p) for p in postgres.get("expose") or []]
    assert "127.0.0.1" in " ".join(postgres["healthcheck"]["test"]), (
        "the healthcheck must go over TCP: the image's init phase listens on the socket only"
    )


def test_seed_writes_example_data_once_postgres_is_ready(stack: dict[str, Any]) -> None:
    seed = service(stack, "seed")
    assert depends_on(seed) == {"postgres": "service_healthy"}
    assert command(seed) == ["python", "docker/seed.py"]
    assert environment(seed)["SEED_PATIENTS"] == "100"
    assert str(seed.get("restart", "no")) == "no"
    text = (ROOT / "docker" / "seed.py").read_text()
    assert "create_records_db.py" in text and "--patients" in text
    # The generator learns from the demo the repository ships (gzip'd), mounted where
    # MIMIC_DEMO_DIR points: the image leaves test/ out, but test/utils.
    demo = {target: Path(source) for source, target in mounts(seed)}
    assert demo[environment(seed)["MIMIC_DEMO_DIR"]] == ROOT / "test" / "data" / "mimic-iii-demo"
    assert sorted(p.name for p in demo[environment(seed)["MIMIC_DEMO_DIR"]].glob("*.csv.gz"))


def test_sftp_has_the_user_and_upload_folders(stack: dict[str, Any]) -> None:
    settings = env_example()
    sftp = service(stack, "sftp")
    assert sftp["image"].startswith("atmoz/sftp")
    assert "22" in [str(p) for p in sftp.get("expose") or []]
    users = command(sftp)
    assert len(users) == 1
    user, password, _uid, _gid, folders = users[0].split(":")
    assert (user, password) == (settings["SFTP_USER"], SECRET_VALUES["SFTP_UPLOAD_PASSWORD"])
    connect = environment(service(stack, "connect"))
    assert (connect["SFTP_USER"], connect["SFTP_PASSWORD"]) == (user, password)
    assert set(folders.split(",")) == {"upload/data", "upload/error", "upload/finished"}


def test_app_image_is_non_root_and_keeps_the_seed_tools() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert re.search(r"^RUN .*pip install", dockerfile, re.M)
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^CMD \[", dockerfile, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".state", ".env"):
        assert entry in ignored, f".dockerignore must leave out {entry}"
    assert "!test/utils" in ignored


# --------------------------------------------------------------------------- #
# Metrics: Prometheus scrapes the services, Grafana shows the dashboard
# --------------------------------------------------------------------------- #
def test_the_services_serve_their_metrics_to_the_compose_network(stack: dict[str, Any]) -> None:
    from river.settings import Settings

    for name, port in METRICS_PORTS.items():
        env = environment(service(stack, name))
        assert env["METRICS_HOST"] == "0.0.0.0", f"{name}: Prometheus scrapes it by its name"
        assert getattr(Settings, f"metrics_port_{name}") == port
        assert env.get(f"METRICS_PORT_{name.upper()}", str(port)) == str(port), name
        assert env["LOG_FORMAT"] == env_example()["LOG_FORMAT"] == "text", name


def test_prometheus_scrapes_the_four_services_with_the_local_stacks_rules(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    prometheus = service(stack, "prometheus")
    assert prometheus["image"].startswith("prom/prometheus:")
    files = {Path(source): target for source, target in mounts(prometheus)}
    config_target = files[PROMETHEUS_CONFIG]
    assert f"--config.file={config_target}" in command(prometheus)
    # One set of alert rules: the local stack's file, mounted where the config names it.
    config = yaml_to_data(PROMETHEUS_CONFIG.read_text())
    (rules,) = config["rule_files"]
    assert files[ALERT_RULES] == str(Path(config_target).parent / rules)
    (job,) = config["scrape_configs"]
    targets = {group["labels"]["component"]: group["targets"] for group in job["static_configs"]}
    assert targets == {name: [f"{name}:{port}"] for name, port in METRICS_PORTS.items()}
    # The local stack's scrape job has the same name and labels: the alerts work on both.
    local = yaml_to_data((ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())
    assert local["scrape_configs"][0]["job_name"] == job["job_name"] == "fhir-river"
    assert 'up{job="fhir-river"}' in ALERT_RULES.read_text()
    promtool = shutil.which("promtool")
    if promtool:  # the config with the rules beside it, as in the container
        shutil.copy(PROMETHEUS_CONFIG, tmp_path / "prometheus.yml")
        shutil.copy(ALERT_RULES, tmp_path / rules)
        done = subprocess.run(
            [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_has_the_prometheus_datasource_and_the_dashboard(stack: dict[str, Any]) -> None:
    grafana = service(stack, "grafana")
    assert grafana["image"].startswith("grafana/grafana:")
    assert depends_on(grafana) == {"prometheus": "service_healthy"}
    assert service(stack, "prometheus").get("healthcheck")
    env = environment(grafana)
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == SECRET_VALUES["GRAFANA_ADMIN_PASSWORD"]
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    files = {Path(source): target for source, target in mounts(grafana)}
    provisioning = GRAFANA / "provisioning"
    assert files[provisioning / "datasources"] == "/etc/grafana/provisioning/datasources"
    assert files[provisioning / "dashboards"] == "/etc/grafana/provisioning/dashboards"
    (datasource,) = yaml_to_data((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus"
    ((_, prometheus_port),) = ports(service(stack, "prometheus"))
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    # The dashboard's panels name this datasource; the provider reads its folder.
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {
        target["datasource"]["uid"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    assert uids == {datasource["uid"]}
    (provider,) = yaml_to_data((provisioning / "dashboards" / "fhir-river.yml").read_text())[
        "providers"
    ]
    assert files[DASHBOARD.parent] == provider["options"]["path"]
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == (
        f"{provider['options']['path']}/{DASHBOARD.name}"
    )


# --------------------------------------------------------------------------- #
# The `hapi` profile: HAPI FHIR as the loader's target
# --------------------------------------------------------------------------- #
HAPI_URL = "http://hapi:8080/fhir"
# The local server's settings (infra/hapi) and the starter's names for them.
LOCAL_HAPI_SETTINGS = {
    "enforce-referential-integrity-on-write": "enforce_referential_integrity_on_write",
    "auto-create-placeholder-reference-targets": "auto_create_placeholder_reference_targets",
    "mass-ingestion-mode": "mass_ingestion_mode_enabled",
    "default-page-size": "default_page_size",
    "max-page-size": "max_page_size",
}


def fhir_server_settings() -> list[str]:
    """The FHIR_SERVER_* settings .env.example lists (README, Loading into a FHIR server)."""
    names = [name for name in env_example() if name.startswith("FHIR_SERVER_")]
    assert "FHIR_SERVER_URL" in names and "FHIR_SERVER_PASSWORD" in names
    read = set(re.findall(r'"(FHIR_SERVER_[A-Z_]+)"', (ROOT / "river" / "settings.py").read_text()))
    assert read <= set(names), f"river/settings.py reads {sorted(read - set(names))}"
    return names


def test_only_hapi_is_in_a_profile(stack: dict[str, Any], hapi_stack: dict[str, Any]) -> None:
    """HAPI FHIR runs only with --profile hapi (Compose v2 leaves it out of the stack
    without it, v1 lists it with its profile); everything else always runs."""
    for resolved in (stack, hapi_stack):
        for name, svc in resolved["services"].items():
            assert (svc.get("profiles") or []) == PROFILES.get(name, []), name
    assert "hapi" in hapi_stack["services"]
    assert set(hapi_stack["services"]) - set(stack["services"]) <= {"hapi"}
    # No service waits for it: depends_on cannot name a service a profile may leave out.
    # The loader waits for a FHIR server that does not answer (StoreUnavailable).
    for resolved in (stack, hapi_stack):
        for name, svc in resolved["services"].items():
            assert "hapi" not in depends_on(svc), f"{name} depends on hapi"


def test_hapi_is_the_local_servers_version_on_postgresql(hapi_stack: dict[str, Any]) -> None:
    hapi = service(hapi_stack, "hapi")
    version = re.search(r"HAPI_VERSION:=([\d.]+)", (ROOT / "infra" / "hapi.sh").read_text())
    assert version, "infra/hapi.sh names no HAPI_VERSION"
    # The starter's image tags: v<HAPI FHIR version>-<the starter's revision>.
    assert re.fullmatch(rf"hapiproject/hapi:v{re.escape(version.group(1))}-\d+", hapi["image"])
    env = environment(hapi)
    postgres = environment(service(hapi_stack, "postgres"))
    assert (
        env["SPRING_DATASOURCE_URL"]
        == f"jdbc:postgresql://postgres:5432/{postgres['HAPI_DB_NAME']}"
    )
    assert postgres["HAPI_DB_NAME"] == "hapi"
    assert env["SPRING_DATASOURCE_USERNAME"] == "river_hapi"
    assert env["SPRING_DATASOURCE_PASSWORD"] == SECRET_VALUES["HAPI_DB_PASSWORD"]
    assert postgres["HAPI_DB_PASSWORD"] == SECRET_VALUES["HAPI_DB_PASSWORD"]
    assert depends_on(hapi) == {"postgres": "service_healthy"}
    # The services reach it by its name, on the port of HAPI_URL.
    assert str(urlsplit(HAPI_URL).port) in [str(p) for p in hapi.get("expose") or []]
    # Its settings file is mounted where Spring Boot is told to read it.
    files = {Path(source): target for source, target in mounts(hapi)}
    location = env["SPRING_CONFIG_ADDITIONAL_LOCATION"]
    assert location == f"file:{files[DOCKER_HAPI / 'application.yaml']}"


def test_hapi_role_is_made_by_the_init_scripts(stack: dict[str, Any]) -> None:
    """Its own role, owner of its own database, made on the first start whatever the
    profile (the scripts never run again on that volume); never a superuser."""
    script = DOCKER_POSTGRES / "15-hapi.sh"
    text = script.read_text()
    assert re.search(r"^\\getenv \w+ HAPI_DB_PASSWORD$", text, re.M)
    assert "CREATE ROLE %I LOGIN PASSWORD %L', 'river_hapi'" in text
    assert "CREATE DATABASE %I OWNER river_hapi" in text
    assert "REVOKE ALL ON DATABASE %I FROM PUBLIC" in text
    assert 'hapi_db="${HAPI_DB_NAME:-hapi}"' in text
    for word in ("SUPERUSER", "CREATEDB", "CREATEROLE", "BYPASSRLS", "REPLICATION"):
        assert word not in text, f"river_hapi is made with {word}"
    assert not re.search(r"^\s*exit\b", text, re.M), "the entrypoint may source it"
    init = {Path(source): target for source, target in mounts(service(stack, "postgres"))}
    assert init[script].startswith("/docker-entrypoint-initdb.d/")
    assert init[DOCKER_POSTGRES / "10-fhir-river.sh"] < init[script]


def test_hapi_has_the_local_servers_settings() -> None:
    """What FHIR River needs of a FHIR server (README, Loading into a FHIR server), as
    infra/hapi sets it, under the starter's property names."""
    ours = yaml_to_data((DOCKER_HAPI / "application.yaml").read_text())
    local = yaml_to_data((LOCAL_HAPI / "src/main/resources/application.yaml").read_text())
    fhir = ours["hapi"]["fhir"]
    for local_name, name in LOCAL_HAPI_SETTINGS.items():
        assert fhir[name] == local["hapi"][local_name], name
    assert fhir["enforce_referential_integrity_on_write"] is False
    # What infra/hapi's ServerConfig sets in code.
    config = next(LOCAL_HAPI.rglob("ServerConfig.java")).read_text()
    assert "setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ANY)" in config
    assert fhir["client_id_strategy"] == "ANY"
    assert "setEnforceReferentialIntegrityOnDelete(false)" in config
    assert fhir["enforce_referential_integrity_on_delete"] is False
    assert "setAllowMultipleDelete(true)" in config
    assert fhir["allow_multiple_delete"] is True
    # null there (no reuse); Spring binds no null, and a 0 ms window reuses nothing.
    assert "setReuseCachedSearchResultsForMillis(null)" in config
    assert fhir["reuse_cached_search_results_millis"] == 0
    # $expunge is the local tests' (they empty that server); off here (the starter's
    # default is on).
    assert fhir["expunge_enabled"] is False and fhir["delete_expunge_enabled"] is False
    assert fhir["fhir_version"] == "R4"
    # PostgreSQL, not the starter's in-memory H2.
    spring = ours["spring"]
    assert (
        spring["datasource"]["driver-class-name"]
        == local["spring"]["datasource"]["driver-class-name"]
    )
    dialect = "hibernate.dialect"
    assert spring["jpa"]["properties"][dialect] == local["spring"]["jpa"]["properties"][dialect]


def test_the_services_load_into_the_fhir_server_they_are_given(
    stack: dict[str, Any], env_dir: Path
) -> None:
    """FHIR_SERVER_* reach the services from .env or the shell (env_file brings only
    .env.example's empty values): unset, the store keeps the resources."""
    settings = env_example()
    names = fhir_server_settings()
    for name in APP_SERVICES:
        env = environment(service(stack, name))
        for setting in names:
            assert env[setting] == settings[setting], f"{name} {setting}"
    assert settings["FHIR_SERVER_URL"] == ""
    # FHIR_SERVER_URL=http://hapi:8080/fhir docker compose --profile hapi up
    env_file = env_dir / "hapi-target.env"
    target = f"FHIR_SERVER_URL={HAPI_URL}"
    text = re.sub(r"^FHIR_SERVER_URL=.*$", target, ENV_EXAMPLE.read_text(), count=1, flags=re.M)
    assert target in text
    secrets = [f"{secret}={SECRET_VALUES[secret]}" for secret in sorted(SECRETS)]
    env_file.write_text(text + "\n".join(secrets) + "\n")
    resolved = resolve(env_file, "--profile", "hapi")
    assert "hapi" in resolved["services"]
    for name in APP_SERVICES:
        assert environment(service(resolved, name))["FHIR_SERVER_URL"] == HAPI_URL, name


def test_the_profile_is_documented() -> None:
    command_line = f"FHIR_SERVER_URL={HAPI_URL} docker compose --profile hapi up"
    assert command_line in COMPOSE_FILE.read_text()
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Loading into a FHIR server\n(.*?)(?=^## )", readme, re.M | re.S)
    assert section and command_line in section.group(1)
    assert "HAPI_DB_PASSWORD" in env_example_block("Docker Compose")
