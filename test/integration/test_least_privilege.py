"""Least privilege in the local stack (make start): the FHIR River services and Kafka
Connect run as an unprivileged system user and own only what they write; Connect offers
only the connectors FHIR River uses; the SFTP account can do SFTP and nothing else."""

from __future__ import annotations

import json
import os
import pwd
import urllib.request
import uuid
from pathlib import Path

import paramiko
import pytest

from test.integration.test_stack import ROOT, S

pytestmark = pytest.mark.stack

SERVICE_USER = os.environ.get("SERVICE_USER", "fhir-river")
STATE_DIR = (ROOT / S["STATE_DIR"]).resolve()
PARTS = ("api", "extractor", "transformer", "loader", "connect")
USED = {
    "io.debezium.connector.postgresql.PostgresConnector",
    "org.apache.camel.kafkaconnector.CamelSourceConnector",
}


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def pid_of(part: str) -> int:
    pid_file = STATE_DIR / "pids" / f"{part}.pid"
    if not pid_file.exists():
        pytest.fail(f"{part} is not running ({pid_file} missing): start the stack with make start")
    pid = int(pid_file.read_text().split()[0])
    assert Path(f"/proc/{pid}").exists(), f"{part} (pid {pid}) is not running: make status"
    return pid


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def test_the_service_user_is_a_system_account_without_login():
    account = pwd.getpwnam(SERVICE_USER)
    assert account.pw_uid != 0 and account.pw_uid < 1000, account  # a system user
    assert account.pw_shell in ("/usr/sbin/nologin", "/bin/false"), account
    assert S["SFTP_USER"] != SERVICE_USER


@pytest.mark.parametrize("part", PARTS)
def test_the_part_runs_as_the_service_user_without_privileges(part):
    uid = pwd.getpwnam(SERVICE_USER).pw_uid
    pid = pid_of(part)
    for process in [pid, *children(pid)]:  # the api's gunicorn workers too
        fields = status(process)
        # real, effective, saved and file-system uid (and gid): all the service user's.
        assert fields["Uid"].split() == [str(uid)] * 4, (part, process, fields["Uid"])
        assert fields["Gid"].split() == [str(pwd.getpwnam(SERVICE_USER).pw_gid)] * 4
        assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
        assert fields["NoNewPrivs"] == "1"  # no setuid program can give it root back


@pytest.mark.parametrize("part", PARTS)
def test_what_the_part_writes_is_owned_by_the_service_user(part):
    uid = pwd.getpwnam(SERVICE_USER).pw_uid
    log = STATE_DIR / "logs" / f"{part}.log"
    assert log.stat().st_uid == uid, f"{log} is owned by uid {log.stat().st_uid}"
    assert log.stat().st_mode & 0o007 == 0  # logs may hold what a source holds
    for rolled in log.parent.glob(f"{part}.log.*"):
        assert rolled.stat().st_uid == uid, rolled
    # Beyond its logs, nothing of the stack's state is the service user's.
    owned = [
        path
        for folder in ("kafka", "connect-plugins", "pids", "sftp")
        for path in [STATE_DIR / folder, *(STATE_DIR / folder).glob("*")]
        if path.exists() and path.stat().st_uid == uid
    ]
    assert owned == []


def test_connect_offers_only_the_connectors_fhir_river_uses():
    url = f"http://127.0.0.1:{S['KAFKA_CONNECT_PORT']}/connector-plugins"
    with urllib.request.urlopen(url, timeout=10) as answer:
        connectors = {plugin["class"] for plugin in json.load(answer)}
    assert connectors == USED
    with urllib.request.urlopen(url + "?connectorsOnly=false", timeout=10) as answer:
        everything = {plugin["class"] for plugin in json.load(answer)}
    assert not [name for name in everything if "FileStream" in name]
    jars = [jar.name for jar in (STATE_DIR / "kafka" / "lib").glob("connect-file*.jar")]
    assert jars == []


# --- SFTP only -----------------------------------------------------------------------------


@pytest.fixture
def ssh():
    transport = paramiko.Transport(("127.0.0.1", int(S["SFTP_PORT"])))
    transport.connect(username=S["SFTP_USER"], password=S["SFTP_PASSWORD"])
    yield transport
    transport.close()


def run(transport: paramiko.Transport, command: str) -> tuple[bytes, int]:
    channel = transport.open_session(timeout=10)
    channel.settimeout(10)
    channel.exec_command(command)
    channel.shutdown_write()
    out = b""
    while chunk := channel.recv(4096):
        out += chunk
    return out, channel.recv_exit_status()


def test_the_sftp_account_runs_no_command(ssh):
    marker = uuid.uuid4().hex
    for command in (f"echo {marker}", f"/bin/sh -c 'echo {marker}'", "id"):
        out, code = run(ssh, command)
        assert marker.encode() not in out and b"uid=" not in out, (command, out)
        assert code != 0, (command, out)


def test_the_sftp_account_gets_no_shell_nor_terminal(ssh):
    channel = ssh.open_session(timeout=10)
    with pytest.raises(paramiko.SSHException):
        channel.get_pty()
    channel = ssh.open_session(timeout=10)
    channel.settimeout(10)
    channel.invoke_shell()
    marker = uuid.uuid4().hex
    try:
        channel.sendall(f"echo {marker}\n".encode())
        channel.shutdown_write()
    except OSError:
        pass  # the server closed the channel first (seen in CI): no shell either way
    out = b""
    while chunk := channel.recv(4096):
        out += chunk
    assert marker.encode() not in out, out
    assert channel.recv_exit_status() != 0


def test_the_sftp_account_forwards_no_port(ssh):
    kafka = ("127.0.0.1", int(S["KAFKA_PORT"]))
    with pytest.raises(paramiko.ChannelException) as refused:
        ssh.open_channel("direct-tcpip", kafka, ("127.0.0.1", 0), timeout=10)
    assert refused.value.code == paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
    with pytest.raises(paramiko.SSHException):
        ssh.request_port_forward("127.0.0.1", 0)
    # What it may do, it still does: SFTP in its chroot.
    sftp = paramiko.SFTPClient.from_transport(ssh)
    assert sorted(sftp.listdir("/upload")) == ["data", "error", "finished"]
    assert "etc" not in sftp.listdir("/")
