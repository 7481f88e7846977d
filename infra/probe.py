"""Readiness probes and topic setup for infra/start.sh (run with the project's venv).

    probe.py kafka   --bootstrap HOST:PORT --timeout S [--pid PID]
    probe.py topics  --bootstrap HOST:PORT --partitions N NAME...
    probe.py http    --url URL --timeout S [--pid PID]
    probe.py cluster-id
    probe.py scram-user --bootstrap HOST:PORT --sasl-bootstrap HOST:PORT --user NAME
                        --password-file FILE [--timeout S]

Exit 0 when ready/done; 1 on timeout or failure (one sentence on stderr); 2 when the
watched process (--pid) died while waiting.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
import urllib.error
import urllib.request
import uuid


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "reconnect.backoff.max.ms": 250,
            "log_level": 0,
            "logger": _quiet_logger(),
        }
    )


def _quiet_logger():
    import logging

    logger = logging.getLogger("probe.kafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def wait_kafka(bootstrap: str, timeout: float, pid: int | None) -> int:
    admin = _admin(bootstrap)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return 2
        try:
            metadata = admin.list_topics(timeout=1)
            if metadata.brokers:
                return 0
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(0.2)
    print(f"Kafka did not answer on {bootstrap} within {timeout:.0f} s.", file=sys.stderr)
    return 1


def ensure_topics(bootstrap: str, partitions: int, names: list[str]) -> int:
    from confluent_kafka.admin import NewPartitions, NewTopic

    admin = _admin(bootstrap)
    existing = admin.list_topics(timeout=10).topics
    created, grown = [], []
    new = [
        NewTopic(n, num_partitions=partitions, replication_factor=1)
        for n in names
        if n not in existing
    ]
    for name, future in admin.create_topics(new, request_timeout=15).items() if new else []:
        try:
            future.result()
            created.append(name)
        except Exception as exc:  # noqa: BLE001
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                print(f"Could not create topic {name}: {exc}.", file=sys.stderr)
                return 1
    small = [
        NewPartitions(n, partitions)
        for n in names
        if n in existing and len(existing[n].partitions) < partitions
    ]
    for name, future in admin.create_partitions(small).items() if small else []:
        future.result()
        grown.append(name)
    parts = []
    if created:
        parts.append("created " + " ".join(created))
    if grown:
        parts.append(f"grown to {partitions} partitions: " + " ".join(grown))
    print("; ".join(parts) or "present")
    return 0


def wait_http(url: str, timeout: float, pid: int | None) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return 2
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return 0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    print(f"{url} did not answer within {timeout:.0f} s.", file=sys.stderr)
    return 1


def cluster_id() -> int:
    """A Kafka cluster id (what `kafka-storage random-uuid` prints), without a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            print(text)
            return 0


def scram_user(
    bootstrap: str, sasl_bootstrap: str, user: str, password_file: str, timeout: float
) -> int:
    """Gives the SCRAM-SHA-512 user `user` the password in `password_file` (made by
    start.sh, never on a command line), through the PLAINTEXT listener, then waits until
    the SASL listener accepts it (KRaft spreads credentials through its metadata log)."""
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    with open(password_file, encoding="utf-8") as f:
        password = f.read().strip()
    admin = _admin(bootstrap)
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode()
    )
    try:
        for future in admin.alter_user_scram_credentials([upsert], request_timeout=15).values():
            future.result(20)
    except Exception as exc:  # noqa: BLE001 - said in one sentence
        print(f"Could not set the SCRAM-SHA-512 credential of {user}: {exc}.", file=sys.stderr)
        return 1
    refused: list[str] = []

    def error_cb(error) -> None:
        refused.append(error.str())

    from confluent_kafka.admin import AdminClient

    client = AdminClient(
        {
            "bootstrap.servers": sasl_bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": password,
            "reconnect.backoff.max.ms": 250,
            "error_cb": error_cb,
            "log_level": 0,
            "logger": _quiet_logger(),
        }
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.list_topics(timeout=1).brokers:
                print(f"user {user} (SCRAM-SHA-512) on {sasl_bootstrap}")
                return 0
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(0.2)
    said = f": {refused[-1]}" if refused else ""
    print(
        f"Kafka's SASL listener {sasl_bootstrap} did not accept user {user} within"
        f" {timeout:.0f} s{said}.",
        file=sys.stderr,
    )
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    kafka = sub.add_parser("kafka")
    kafka.add_argument("--bootstrap", required=True)
    kafka.add_argument("--timeout", type=float, default=60)
    kafka.add_argument("--pid", type=int)
    topics = sub.add_parser("topics")
    topics.add_argument("--bootstrap", required=True)
    topics.add_argument("--partitions", type=int, default=3)
    topics.add_argument("names", nargs="+")
    http = sub.add_parser("http")
    http.add_argument("--url", required=True)
    http.add_argument("--timeout", type=float, default=90)
    http.add_argument("--pid", type=int)
    sub.add_parser("cluster-id")
    scram = sub.add_parser("scram-user")
    scram.add_argument("--bootstrap", required=True)
    scram.add_argument("--sasl-bootstrap", required=True)
    scram.add_argument("--user", required=True)
    scram.add_argument("--password-file", required=True)
    scram.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    if args.command == "kafka":
        return wait_kafka(args.bootstrap, args.timeout, args.pid)
    if args.command == "topics":
        return ensure_topics(args.bootstrap, args.partitions, args.names)
    if args.command == "http":
        return wait_http(args.url, args.timeout, args.pid)
    if args.command == "scram-user":
        return scram_user(
            args.bootstrap, args.sasl_bootstrap, args.user, args.password_file, args.timeout
        )
    return cluster_id()


if __name__ == "__main__":
    sys.exit(main())
