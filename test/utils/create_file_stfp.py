"""Upload CSV files over SFTP, the way a hospital drops them (the seed's name).

    python test/utils/create_file_stfp.py [FILE ...] [--remote-dir upload/data]
    python test/utils/create_file_stfp.py --patients 5 --seed 1

Each file goes up as `<name>.part`, then is renamed `<name>`: a reader polling the
folder never sees half a file (have it ignore `*.part`). A file of the same name
already there is replaced. With no FILE, a small synthetic `patients.csv` (the
columns of MIMIC's patients table, from synthetic.py) is written and uploaded;
its ids are fresh at every run: they start at 1,000,000,000 + tenths of seconds
since the epoch modulo 1,000,000,000, above MIMIC's and create_records_db's ids.

The server: $SFTP_HOST (127.0.0.1), $SFTP_PORT (2222), $SFTP_USER (river),
$SFTP_PASSWORD (river), the local stack's SFTP server; the folder is relative to
the user's home (the chroot of the stack: upload/data, upload/error,
upload/finished). The server's host key is not checked: a tool for test servers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import posixpath
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko

try:
    from . import synthetic
except ImportError:  # run as a script
    import synthetic

DEFAULT_REMOTE_DIR = "upload/data"
FRESH_ID_BASE = 1_000_000_000
CONNECT_TIMEOUT = 10.0


def sftp_settings(
    host: str | None = None,
    port: int | None = None,
    user: str | None = None,
    password: str | None = None,
) -> tuple[str, int, str, str]:
    """The arguments given, else the environment, else the local stack's defaults."""
    return (
        host or os.environ.get("SFTP_HOST") or "127.0.0.1",
        int(port or os.environ.get("SFTP_PORT") or 2222),
        user or os.environ.get("SFTP_USER") or "river",
        password if password is not None else os.environ.get("SFTP_PASSWORD", "river"),
    )


def _connect(host: str, port: int, user: str, password: str) -> paramiko.Transport:
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise ConnectionError(
            f"no SFTP server on {host}:{port} ({exc.strerror or exc}): start the stack"
            " (make start) or set SFTP_HOST and SFTP_PORT"
        ) from exc
    transport = paramiko.Transport(sock)
    try:
        transport.connect(username=user, password=password)
    except paramiko.AuthenticationException as exc:
        transport.close()
        raise ConnectionError(
            f"SFTP login refused for {user}@{host}:{port}: check SFTP_USER and SFTP_PASSWORD"
        ) from exc
    except (paramiko.SSHException, OSError):
        transport.close()
        raise
    return transport


@contextlib.contextmanager
def sftp_session(
    host: str | None = None,
    port: int | None = None,
    user: str | None = None,
    password: str | None = None,
) -> Iterator[paramiko.SFTPClient]:
    """An SFTP session on the server the arguments (else the environment) name."""
    transport = _connect(*sftp_settings(host, port, user, password))
    try:
        yield paramiko.SFTPClient.from_transport(transport)
    finally:
        transport.close()


def list_folder(folder: str) -> list[str]:
    with sftp_session() as sftp:
        return sorted(sftp.listdir(folder))


UPLOAD_FOLDERS = ("data", "finished", "error")


def make_upload_folder(root: str) -> None:
    """`root` laid out as the stack's upload/: data (polled), finished and error."""
    with sftp_session() as sftp:
        sftp.mkdir(root)
        for folder in UPLOAD_FOLDERS:
            sftp.mkdir(f"{root}/{folder}")


def remove_upload_folder(root: str) -> None:
    """Remove what make_upload_folder made, and the files in it."""
    with sftp_session() as sftp:
        for folder in UPLOAD_FOLDERS:
            for name in sftp.listdir(f"{root}/{folder}"):
                sftp.remove(f"{root}/{folder}/{name}")
            sftp.rmdir(f"{root}/{folder}")
        sftp.rmdir(root)


def upload(
    path: str | os.PathLike[str],
    remote_dir: str = DEFAULT_REMOTE_DIR,
    *,
    host: str | None = None,
    port: int | None = None,
    user: str | None = None,
    password: str | None = None,
    remote_name: str | None = None,
) -> str:
    """Upload one file as `<name>.part`, then rename it `<name>`; its remote path."""
    return upload_many([path], remote_dir, host=host, port=port, user=user,
                       password=password, remote_names=[remote_name])[0]  # fmt: skip


def upload_many(
    paths: list[str | os.PathLike[str]],
    remote_dir: str = DEFAULT_REMOTE_DIR,
    *,
    host: str | None = None,
    port: int | None = None,
    user: str | None = None,
    password: str | None = None,
    remote_names: list[str | None] | None = None,
) -> list[str]:
    """Upload files over one connection (see upload); their remote paths."""
    host, port, user, password = sftp_settings(host, port, user, password)
    names = remote_names or [None] * len(paths)
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no file {path}")
    done = []
    transport = _connect(host, port, user, password)
    try:
        sftp = paramiko.SFTPClient.from_transport(transport)
        try:
            sftp.stat(remote_dir)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"no folder {remote_dir} on sftp://{user}@{host}:{port}"
            ) from exc
        for path, name in zip(paths, names, strict=True):
            final = posixpath.join(remote_dir, name or Path(path).name)
            partial = final + ".part"
            sftp.put(os.fspath(path), partial, confirm=True)
            try:
                sftp.posix_rename(partial, final)  # replaces, atomically (OpenSSH)
            except OSError:
                # A server without posix-rename: a plain rename, which does not replace.
                with contextlib.suppress(FileNotFoundError):
                    sftp.remove(final)
                sftp.rename(partial, final)
            done.append(final)
    finally:
        transport.close()
    return done


def fresh_first_id() -> int:
    """An id that no earlier run gave (tenths of seconds; wraps after ~3 years)."""
    return FRESH_ID_BASE + int(time.time() * 10) % FRESH_ID_BASE


def write_patients_csv(path: Path, n: int = 5, seed: int = 0, first_id: int | None = None) -> Path:
    """A synthetic patients.csv (the demo's header and format) with fresh ids."""
    first = fresh_first_id() if first_id is None else first_id
    start = synthetic.IdStart(subject_id=first, hadm_id=first, icustay_id=first)
    start.row_id = dict.fromkeys(synthetic.PATIENT_TABLES, first)
    rows = synthetic.iter_rows("patients", n, seed, start=start)
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(synthetic.csv_text([synthetic.COLUMNS["patients"]]))
        f.write(synthetic.csv_text(rows))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Upload CSV files over SFTP (as NAME.part, then renamed NAME).",
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="*", type=Path, help="files to upload")
    parser.add_argument(
        "--remote-dir", default=DEFAULT_REMOTE_DIR, help=f"default {DEFAULT_REMOTE_DIR}"
    )
    parser.add_argument(
        "--patients", type=int, default=5, help="rows of the synthetic patients.csv (no FILE)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the synthetic rows")
    args = parser.parse_args(argv)
    if not 1 <= args.patients <= 100_000:
        parser.error("--patients must be between 1 and 100,000")

    host, port, user, _password = sftp_settings()
    try:
        with tempfile.TemporaryDirectory(prefix="river-sftp-") as tmp:
            files = args.files
            if not files:
                first = fresh_first_id()
                seed = first if args.seed is None else args.seed
                files = [write_patients_csv(Path(tmp) / "patients.csv", args.patients, seed, first)]
            for remote in upload_many(files, args.remote_dir):
                print(f"uploaded sftp://{user}@{host}:{port}/{remote}")
            if not args.files:
                print(f"  {args.patients} synthetic patients, subject_id {first} to"
                      f" {first + args.patients - 1}")  # fmt: skip
    except (OSError, paramiko.SSHException) as exc:
        print(f"create_file_stfp: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
