"""Secret masking has one module (river/secrets.py) and one mask; the core imports
nothing of the API or the adapters."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import sqlalchemy as sa

from river.errors import shape_of
from river.secrets import (
    MASK,
    Secrets,
    install_log_filter,
    mask,
    mask_config,
    mask_url_password,
    url_password,
)

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "p@ss/w0rd Sekr3t"


def test_one_mask():
    assert MASK == "***"
    import adapters.connect

    assert adapters.connect.mask_secrets("postgresql://u:hunter2@h/db") == "postgresql://u:***@h/db"
    assert adapters.connect.mask_config({"database.password": "x"}) == {"database.password": MASK}


def test_masking_modules_are_one():
    """Only river/secrets.py writes a mask; the others import it."""
    writers = []
    for folder in ("river", "api", "adapters", "extractor", "transformer", "loader"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            if '"***"' in text or "'***'" in text or '"****"' in text:
                writers.append(str(path.relative_to(ROOT)))
    assert writers == ["river/secrets.py"]


def test_the_core_imports_neither_the_api_nor_the_adapters():
    for path in (ROOT / "river").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("api", "adapters")), (path, name)


def test_a_url_password_in_every_form():
    url = f"postgresql://river:{'p%40ss%2Fw0rd%20Sekr3t'}@db:5432/mimic"
    assert url_password(url) == PASSWORD
    assert url_password(sa.make_url(url)) == PASSWORD
    said = f"connection to {url} failed: password {PASSWORD!r} refused\n  DETAIL: x"
    masked = mask_url_password(said, url)
    assert "Sekr3t" not in masked and "p%40ss" not in masked
    assert (
        masked
        == "connection to postgresql://river:***@db:5432/mimic failed: password '***' refused DETAIL: x"
    )
    assert "Sekr3t" not in mask_url_password(said, sa.make_url(url))


def test_known_secrets_and_what_any_text_may_carry():
    secrets = Secrets(["hunter22", "ab", None])  # "ab" is too short to mask
    assert secrets.mask('{"x": "hunter22", "y": "ab"}') == '{"x": "***", "y": "ab"}'
    assert secrets.mask("hunter22%21") == "***%21"
    assert "hunter22" in secrets and "ab" not in secrets
    assert mask("token=abc.def secret: xyz") == "token=*** secret: ***"
    assert mask("password=${env:PW}") == "password=${env:PW}"
    assert mask_config({"sftp.password": "${env:P}", "user": "u"}) == {
        "sftp.password": "${env:P}",
        "user": "u",
    }


def test_the_log_filter_masks_messages_and_traces():
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    logger = logging.getLogger("test.secrets")
    logger.propagate = False
    logger.addHandler(Keep())
    install_log_filter(logger, Secrets(["hunter22"]))
    install_log_filter(logger, Secrets(["hunter22"]))  # again: one filter
    assert len(logger.filters) == 1
    try:
        raise RuntimeError("boom hunter22")
    except RuntimeError:
        logger.exception("failed with %s", "hunter22")
    assert records and "hunter22" not in records[0] and "boom ***" in records[0]


def test_shapes_never_hold_the_value():
    assert shape_of("+33 7 91 82 73 64") == "a text of 17 characters"
    assert shape_of("x") == "a text of 1 character"
    assert shape_of("") == "an empty text"
    assert shape_of(10006) == "a whole number of 5 digits"
    assert shape_of(1.5) == "a decimal number"
    assert shape_of(float("nan")) == "NaN"
    assert shape_of(None) == "null"
    assert shape_of([1, 2]) == "a list of 2 values"
