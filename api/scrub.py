"""Keeping secrets out of the API's answers and logs (DESIGN.md, Guarantees).

The engine and the store already word their errors without passwords; this
is the last line of defence, because an answer or a log line may quote a
message from a driver we do not control. Known secrets (the passwords of
SOURCE_DB_URL, FHIR_STORE_URL, the mappings' credentials, PYROG_PASSWORD) are
replaced by `***`, and so is the password part of any `scheme://user:pw@`
URL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

import orjson

MASK = "***"
# Shorter "secrets" would mask every other word of an answer, hiding nothing worth it.
MIN_LENGTH = 3
_URL_CREDENTIAL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:@/\s\"']*:)[^@/\s\"']+@")
_URL_CREDENTIAL_BYTES = re.compile(rb"([a-zA-Z][a-zA-Z0-9+.-]*://[^:@/\s\"']*:)[^@/\s\"']+@")


def url_password(url: str) -> str | None:
    """The password of `scheme://user:password@host...`, percent-decoded, if any."""
    match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^@/?#]*)@", url or "")
    if not match or ":" not in match.group(1):
        return None
    return unquote(match.group(1).split(":", 1)[1]) or None


class Secrets:
    """The secrets to mask, in every form they may take in a text or a JSON body."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < MIN_LENGTH:
                continue
            forms |= {secret, quote(secret, safe=""), orjson.dumps(secret).decode()[1:-1]}
        # Longest first: a secret that contains another is masked whole.
        self._texts = sorted((f for f in forms if f), key=len, reverse=True)
        self._bytes = [f.encode() for f in self._texts]

    def text(self, text: str) -> str:
        text = _URL_CREDENTIAL.sub(rf"\1{MASK}@", text)
        for secret in self._texts:
            text = text.replace(secret, MASK)
        return text

    def body(self, data: bytes) -> bytes:
        data = _URL_CREDENTIAL_BYTES.sub(rb"\1***@", data)
        for secret in self._bytes:
            data = data.replace(secret, MASK.encode())
        return data

    def __contains__(self, text: str) -> bool:
        return any(secret in text for secret in self._texts)


class ScrubFilter(logging.Filter):
    """Masks secrets in the records of the logger it is attached to, traceback included."""

    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.secrets.text(record.getMessage())
        record.args = None
        if record.exc_info:
            # Render the traceback now, masked; the handler then prints exc_text as is.
            record.exc_text = self.secrets.text(
                logging.Formatter().formatException(record.exc_info)
            )
            record.exc_info = None
        return True


def install_log_filter(logger: logging.Logger, secrets: Secrets) -> None:
    """One ScrubFilter on `logger` (an app made again replaces the previous one)."""
    for existing in [f for f in logger.filters if isinstance(f, ScrubFilter)]:
        logger.removeFilter(existing)
    logger.addFilter(ScrubFilter(secrets))
