"""The `river` command.

    river preview [--mapping PATH] RESOURCE_ID PK [PK ...]
    river batch --mapping PATH [RESOURCE_ID ...] [--all] [--output FILE]   in-process
    river batch [RESOURCE_ID ...] [--wait]                 through the running pipeline
    river status [BATCH_ID]
    river connectors push [FILE ...] | river connectors remove NAME
    river login [--user NAME [--password-stdin]] | river token | river logout
    river check [--mapping PATH]
    river resources [--mapping PATH]

`river batch` runs in-process (no Kafka, NDJSON out) when given --mapping,
--output or --offline; otherwise it asks the API to start a batch.

Exit status: 0 when the command ran (even if some instances have errors), 1
when it could not (invalid mapping, unknown resource, unreachable database),
2 for a wrong command line. Errors are one sentence on stderr, never a trace.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import IO, Any

import orjson

from river.engine import Engine
from river.errors import RiverError
from river.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except RiverError as error:
        print(f"river: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("river: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="river", description="FHIR River: hospital data to FHIR R4."
    )
    commands = parser.add_subparsers(title="commands")

    def command(
        name: str, run: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument(
            "--mapping",
            metavar="PATH",
            help="a Pyrog export file or a folder of them (default: the MAPPINGS setting)",
        )
        sub.set_defaults(run=run)
        return sub

    preview = command("preview", _preview, "print the FHIR resources of a few rows as JSON")
    preview.add_argument("resource_id", help="the mapping resource's id")
    preview.add_argument("primary_key_values", nargs="+", metavar="PK")

    batch = command("batch", _batch, "run a batch: through the pipeline, or in-process to NDJSON")
    batch.add_argument("resource_ids", nargs="*", metavar="RESOURCE_ID")
    batch.add_argument("--all", action="store_true", help="every resource of the mappings")
    batch.add_argument("--offline", action="store_true", help="in-process, without Kafka")
    batch.add_argument("--output", "-o", metavar="FILE", help="NDJSON file (default: stdout)")
    batch.add_argument("--no-validate", action="store_true", help="skip FHIR validation")
    batch.add_argument("--wait", action="store_true", help="follow the batch until it ends")
    batch.add_argument(
        "--pk",
        action="append",
        dest="primary_key_values",
        metavar="VALUE",
        help="only the rows with this primary key value (repeat it); through the API",
    )
    batch.add_argument(
        "--no-progress", action="store_true", help="with --wait: no progress bars, only the summary"
    )
    batch.add_argument("--api", metavar="URL", help="the API (default: http://127.0.0.1:$API_PORT)")

    status = commands.add_parser(
        "status",
        help="the state of a batch (a stalled resource: its stage and why), or of the latest ones",
    )
    status.add_argument("batch_id", nargs="?")
    status.add_argument(
        "--api", metavar="URL", help="the API (default: http://127.0.0.1:$API_PORT)"
    )
    status.set_defaults(run=_status)

    connect_option = argparse.ArgumentParser(add_help=False)
    connect_option.add_argument(
        "--connect", metavar="URL", help="Kafka Connect's REST API (default: KAFKA_CONNECT_URL)"
    )
    connectors = commands.add_parser(
        "connectors", help="push connector configs to Kafka Connect, or remove a connector"
    )
    actions = connectors.add_subparsers(title="actions", dest="action", required=True)
    push = actions.add_parser(
        "push",
        parents=[connect_option],
        help="create or update connectors (PUT /connectors/<name>/config), print their state",
    )
    push.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="connector JSON files (default: every file of kafka_connect_connectors/sources)",
    )
    push.set_defaults(run=_connectors_push)
    remove = actions.add_parser(
        "remove",
        parents=[connect_option],
        help="delete a connector and its offsets; for Debezium, drop its replication slot",
    )
    remove.add_argument("name", metavar="NAME")
    remove.add_argument(
        "--source-db-url",
        metavar="URL",
        help="the database of its replication slot (default: the connector's database.*"
        " settings, ${env:NAME} read from this environment and .env)",
    )
    remove.set_defaults(run=_connectors_remove)

    login = commands.add_parser(
        "login",
        help="log in to the API's identity provider (device flow, or --user for a password)",
    )
    login.add_argument("--user", metavar="NAME", help="log in with this user's password")
    login.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (scripts)"
    )
    login.set_defaults(run=_login)
    token = commands.add_parser(
        "token", help='print an access token: curl -H "Authorization: Bearer $(river token)"'
    )
    token.set_defaults(run=_token)
    logout = commands.add_parser("logout", help="forget the tokens of `river login`")
    logout.set_defaults(run=_logout)

    command("check", _check, "validate the mappings and list their resources")
    command("resources", _check, "list the resources the mappings define")
    return parser


def _login(args: argparse.Namespace) -> int:
    from cli.login import Login

    login = Login(Settings.load())
    if args.user:
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password of {args.user} at {login.provider.issuer}: ")
        login.with_password(args.user, password)
        who = args.user
    else:

        def show(address: str, code: str) -> None:
            print(f"Open {address} and enter the code {code} (waiting...)", file=sys.stderr)

        login.with_device(show)
        who = "you"
    print(f"logged in as {who} at {login.provider.issuer}", file=sys.stderr)
    return 0


def _token(args: argparse.Namespace) -> int:
    from cli.login import Login

    token = Login(Settings.load()).access_token()
    if token is None:
        print(
            "river: not logged in: run `river login` (or set RIVER_CLIENT_ID and"
            " RIVER_CLIENT_SECRET)",
            file=sys.stderr,
        )
        return 1
    print(token)
    return 0


def _logout(args: argparse.Namespace) -> int:
    from cli.login import Login

    Login(Settings.load()).logout()
    print("logged out", file=sys.stderr)
    return 0


def _connect_url(args: argparse.Namespace) -> str:
    return args.connect or Settings.load().kafka_connect_url


def _connectors_push(args: argparse.Namespace) -> int:
    from adapters.connect import push

    return push(_connect_url(args), args.files)


def _connectors_remove(args: argparse.Namespace) -> int:
    from adapters.connect import remove

    return remove(_connect_url(args), args.name, args.source_db_url)


def _engine(args: argparse.Namespace) -> Engine:
    return Engine.from_settings(Settings.load(), args.mapping)


def _preview(args: argparse.Namespace) -> int:
    engine = _engine(args)
    try:
        answer = engine.preview(args.resource_id, args.primary_key_values)
    finally:
        engine.close()
    sys.stdout.buffer.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _check(args: argparse.Namespace) -> int:
    engine = _engine(args)
    for plan in engine.mappings:
        engine.transformer(plan.resource_id)  # binds scripts and concept maps too
        print(f"{plan.resource_id}\t{plan.resource_type}\t{plan.label}")
    print(f"{len(engine.mappings)} resource(s), valid", file=sys.stderr)
    return 0


def _api_url(args: argparse.Namespace) -> str:
    return args.api or f"http://127.0.0.1:{Settings.load().api_port}"


def _status(args: argparse.Namespace) -> int:
    from cli.client import show_status

    return show_status(_api_url(args), args.batch_id)


def _batch(args: argparse.Namespace) -> int:
    if not (args.mapping or args.output or args.offline):
        from cli.client import start_batch

        return start_batch(
            _api_url(args),
            args.resource_ids or None,
            args.primary_key_values,
            wait=args.wait,
            progress=not args.no_progress,
        )
    engine = _engine(args)
    if args.no_validate:
        engine.validator = None
    resource_ids = engine.mappings.resource_ids() if args.all else args.resource_ids
    if not resource_ids:
        print("river: name the resources to run, or --all", file=sys.stderr)
        return 2
    for resource_id in resource_ids:
        engine.plan(resource_id)  # unknown ids fail before any work
    failed = 0
    out: Any = open(args.output, "wb") if args.output else nullcontext(sys.stdout.buffer)  # noqa: SIM115
    summary = []
    with out as stream:
        for resource_id in resource_ids:
            started = time.perf_counter()
            try:
                counts = _run_resource(engine, resource_id, stream)
            except RiverError as error:
                failed += 1
                print(f"river: {error}", file=sys.stderr)
                summary.append((resource_id, None, time.perf_counter() - started))
                continue
            summary.append((resource_id, counts, time.perf_counter() - started))
    engine.close()
    _print_summary(summary)
    return 1 if failed else 0


def _run_resource(engine: Engine, resource_id: str, stream: IO[bytes]) -> dict[str, int]:
    counts = {"instances": 0, "errors": 0, "warnings": 0}
    for outcome in engine.run(resource_id):
        for warning in outcome.warnings:
            counts["warnings"] += 1
            print(f"warning {resource_id} {outcome.primary_key_value}: {warning}", file=sys.stderr)
        if outcome.resource is None:
            counts["errors"] += 1
            print(
                f"error {resource_id} {outcome.primary_key_value}: {outcome.error}", file=sys.stderr
            )
        else:
            counts["instances"] += 1
            stream.write(orjson.dumps(outcome.resource) + b"\n")
    return counts


def _print_summary(summary: list[tuple[str, dict[str, int] | None, float]]) -> None:
    print(
        "\nresource                        instances   errors  warnings   seconds   per second",
        file=sys.stderr,
    )
    for resource_id, counts, seconds in summary:
        if counts is None:
            print(f"{resource_id:30}  not run (see above)", file=sys.stderr)
            continue
        done = counts["instances"] + counts["errors"]
        rate = done / seconds if seconds > 0 else 0.0
        print(
            f"{resource_id:30} {counts['instances']:10} {counts['errors']:8} {counts['warnings']:9}"
            f" {seconds:9.2f} {rate:12.0f}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())
