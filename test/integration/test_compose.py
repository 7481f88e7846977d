"""docker-compose.yml, checked without a Docker engine.

`docker-compose config` (Debian's docker-compose package) validates and resolves
the file; the tests then read the resolved stack and check that it holds the parts
DESIGN.md promises (Kafka in KRaft mode, Connect with its two plugins, PostgreSQL
with the MIMIC schema, MongoDB as the FHIR store, SFTP, the four services from one
image) wired in the right order, and that every ${VAR} it uses has a default or a
line in .env.example. Compose always runs here with a clean environment and an
explicit env file, so that a developer's `.env` or shell cannot change the result.
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

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
CONNECT_DIR = ROOT / "docker" / "connect"

APP_SERVICES = ("api", "extractor", "transformer", "loader")
STACK = {"kafka", "connect", "postgres", "mongo", "sftp", *APP_SERVICES}
TOPICS = {"batch", "extract", "transform", "load", "errors"}
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


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    """The resolved docker-compose.yml (with .env.example's values), as data."""
    # Compose v2 prints JSON; v1 does not know --format (it prints its usage, exit 0).
    done = run_compose("config", "--format", "json", env_file=ENV_EXAMPLE)
    if done.returncode == 0 and done.stdout.lstrip().startswith("{"):
        return json.loads(done.stdout)
    done = run_compose("config", env_file=ENV_EXAMPLE)  # Compose v1: YAML only
    assert done.returncode == 0, done.stderr
    return yaml_to_data(done.stdout)


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


def command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def build_context(svc: dict[str, Any]) -> Path:
    build = svc.get("build")
    assert build, "the service is not built from this checkout"
    context = build if isinstance(build, str) else build["context"]
    return (ROOT / context).resolve()


# --------------------------------------------------------------------------- #
# The file resolves
# --------------------------------------------------------------------------- #
def test_config_resolves_with_env_example() -> None:
    done = run_compose("config", "--quiet", env_file=ENV_EXAMPLE)
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    assert not UNSET_WARNING.search(done.stderr), done.stderr


def test_config_resolves_without_any_setting(empty_env_file: Path) -> None:
    """No .env at all: every variable falls back to its default, none is left blank."""
    done = run_compose("config", "--quiet", env_file=empty_env_file)
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    assert not UNSET_WARNING.search(done.stderr), done.stderr


def test_every_variable_has_a_default_or_is_in_env_example() -> None:
    lines = COMPOSE_FILE.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    text = text.replace("$$", "")  # an escaped $, not a variable
    settings = env_example()
    used = VARIABLE.findall(text)
    assert used, "docker-compose.yml reads no setting at all"
    for name, operator, default in used:
        has_default = operator in ("-", ":-")
        assert has_default or name in settings, (
            f"${{{name}}} has no default and is not in .env.example"
        )
        if has_default and name in settings:
            assert default == settings[name], (
                f"${{{name}:-{default}}}: the default is not .env.example's {settings[name]!r}"
            )


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
    assert "INTERNAL://kafka:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert ("9092", "9092") in ports(kafka)
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
    assert command(service(stack, "api"))[0] == "gunicorn"
    assert "api.app:create_app()" in command(service(stack, "api"))
    for name in ("extractor", "transformer", "loader"):
        assert command(service(stack, name)) == ["python", "-m", name]


def test_api_publishes_port_3000(stack: dict[str, Any]) -> None:
    api = service(stack, "api")
    assert ("3000", "3000") in ports(api)
    assert "0.0.0.0:3000" in command(api)
    assert api.get("healthcheck")


def test_services_reach_each_other_by_name_and_store_in_mongodb(stack: dict[str, Any]) -> None:
    assert service(stack, "mongo")["image"].startswith("mongo:")
    for name in APP_SERVICES:
        env = environment(service(stack, name))
        assert env["FHIR_STORE_URL"].startswith("mongodb://mongo:27017/"), name
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092", name
        assert env["KAFKA_CONNECT_URL"] == "http://connect:8083", name
        assert "@postgres:5432/mimic" in env["SOURCE_DB_URL"], name
        assert "127.0.0.1" not in " ".join(env.values()), f"{name} points at 127.0.0.1"


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
    assert ("8083", "8083") in ports(connect)
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
    assert ("5432", "5432") in ports(postgres)
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


def test_sftp_has_the_user_and_upload_folders(stack: dict[str, Any]) -> None:
    settings = env_example()
    sftp = service(stack, "sftp")
    assert sftp["image"].startswith("atmoz/sftp")
    assert ("2222", "22") in ports(sftp)
    users = command(sftp)
    assert len(users) == 1
    user, password, _uid, _gid, folders = users[0].split(":")
    assert (user, password) == (settings["SFTP_USER"], settings["SFTP_PASSWORD"])
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
