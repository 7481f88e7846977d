"""PostgreSQL over TLS: a URL's query parameters (`?sslmode=verify-full&sslrootcert=...`)
reach libpq untouched, for the FHIR store, the source database (SQLAlchemy) and the
connector tools' source connections, so FHIR_STORE_URL and SOURCE_DB_URL carry TLS
without settings of their own.

A server of this test stands for PostgreSQL: it accepts TLS (answers "S" to libpq's
SSLRequest). libpq then needs the CA that `sslrootcert` names before its handshake: the
error naming that file proves both parameters arrived. No PostgreSQL needed."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import adapters.store.postgres as postgres_store
from adapters.connect import ConnectorError, _source_connection
from adapters.store import StoreUnavailable, open_store
from river.sql import SourceDatabase

SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104
CA = "/nowhere/hospital-ca.pem"


@pytest.fixture
def tls_server() -> Iterator[int]:
    """A port where something answers libpq's SSLRequest with "S" (TLS offered)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    while True:
                        head = conn.recv(8)
                        if len(head) < 8:
                            break
                        code = struct.unpack("!II", head)[1]
                        if code == GSSENC_REQUEST:
                            conn.sendall(b"N")  # no GSS encryption: libpq asks for TLS next
                        elif code == SSL_REQUEST:
                            conn.sendall(b"S")
                            conn.recv(1024)  # a TLS hello, if libpq got that far
                            break
                        else:
                            break
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    done.set()
    thread.join(5)
    server.close()


def url(port: int, scheme: str = "postgresql") -> str:
    return (
        f"{scheme}://river:secret@127.0.0.1:{port}/fhirstore"
        f"?sslmode=verify-full&sslrootcert={CA}&connect_timeout=5"
    )


def says_the_root_certificate_is_missing(text: str) -> bool:
    return f'root certificate file "{CA}" does not exist' in text


def test_psycopg_itself_reads_them_from_the_url(tls_server):
    with pytest.raises(psycopg.OperationalError) as error:
        psycopg.connect(url(tls_server))
    assert says_the_root_certificate_is_missing(str(error.value)), error.value


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_the_postgresql_store_passes_them_to_psycopg(monkeypatch, tls_server, scheme):
    seen: list[Any] = []
    connect = psycopg.connect

    def recording(conninfo: str, **kwargs: Any) -> Any:
        seen.append(conninfo)
        return connect(conninfo, **kwargs)

    monkeypatch.setattr(postgres_store.psycopg, "connect", recording)
    store = open_store(url(tls_server, scheme))
    with pytest.raises(StoreUnavailable) as error:
        store.ping()
    params = conninfo_to_dict(seen[0])
    assert params["sslmode"] == "verify-full"
    assert params["sslrootcert"] == CA
    assert says_the_root_certificate_is_missing(str(error.value)), error.value
    assert "secret" not in str(error.value)  # the password, never
    store.close()


def test_the_source_database_passes_them_through_sqlalchemy(tls_server):
    source = SourceDatabase(url(tls_server))
    try:
        _, params = source.engine.dialect.create_connect_args(source.url)
        assert params["sslmode"] == "verify-full"
        assert params["sslrootcert"] == CA
        with pytest.raises(Exception) as error:  # noqa: PT011 (SQLAlchemy wraps psycopg's)
            source.engine.connect()
        assert says_the_root_certificate_is_missing(str(error.value)), error.value
    finally:
        source.close()


def test_the_connector_tools_source_connections_pass_them(tls_server):
    with pytest.raises(ConnectorError) as error:
        _source_connection(url(tls_server, "postgresql+psycopg"))
    assert says_the_root_certificate_is_missing(str(error.value)), error.value
