"""The documentation holds together: every Markdown file of the repository links only
to files that exist (and to headings that exist), none names the folder of shared
documents beside the checkout (a clone has no such folder), and docs/ keeps up with the code (every setting, every script)."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

from river.scripts import ScriptRegistry
from river.settings import FhirServerSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# Folders that are not the project's own text: tools' state and caches.
SKIPPED = {".git", ".venv", ".state", "node_modules", ".pytest_cache", ".ruff_cache",
           ".mypy_cache", "__pycache__"}  # fmt: skip


def markdown_files() -> list[Path]:
    found = []
    for path in sorted(ROOT.rglob("*.md")):
        parts = path.relative_to(ROOT).parts
        if not any(part in SKIPPED or part.endswith(".egg-info") for part in parts[:-1]):
            found.append(path)
    return found


MARKDOWN = markdown_files()
IDS = [str(path.relative_to(ROOT)) for path in MARKDOWN]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title"), ![alt](target); the target may be in <...>.
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^\s()]+(?:\([^\s()]*\))?)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HTML = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks."""
    lines = []
    fence = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            continue
        lines.append((number, line))
    return lines


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image of a Markdown file."""
    found = []
    for number, line in prose_lines(path):
        line = _INLINE_CODE.sub("", line)  # `[a](b)` in code is no link
        for pattern in (_INLINE_LINK, _REFERENCE, _HTML):
            for match in pattern.finditer(line):
                found.append((number, match.group(1).strip("<>")))
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.strip().lower()
    kept = []
    for char in text:
        if char in " -_" or unicodedata.category(char)[0] in "LN":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """The anchors of a Markdown file's headings (repeated ones get -1, -2...)."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path):
        match = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def test_the_files_are_found():
    names = set(IDS)
    for expected in ("README.md", "docs/README.md", "docs/mapping.md", "docs/architecture.md",
                     "docs/operations.md", "kafka_connect_connectors/README.md"):  # fmt: skip
        assert expected in names


@pytest.mark.parametrize("path", MARKDOWN, ids=IDS)
def test_relative_links_reach_files_that_exist(path: Path):
    broken = []
    for number, target in links(path):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # http(s), mailto...: not a file of the repository
        where, _, fragment = unquote(target).partition("#")
        where = where.split("?", 1)[0]
        file = (path.parent / where).resolve() if where else path
        name = path.relative_to(ROOT)
        if not file.exists():
            broken.append(f"{name}:{number}: {target} (no such file)")
        elif ROOT not in file.parents and file != ROOT:
            broken.append(f"{name}:{number}: {target} (outside the repository)")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{name}:{number}: {target} (no heading #{fragment} in {file.name})")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


BESIDE_THE_CHECKOUT = re.compile(r"\.\./shared\b")


@pytest.mark.parametrize("path", MARKDOWN, ids=IDS)
def test_nothing_refers_to_the_shared_folder(path: Path):
    text = path.read_text(encoding="utf-8")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for number, line in enumerate(text.splitlines(), start=1)
        if BESIDE_THE_CHECKOUT.search(line)
    ]
    assert not found, (
        "these lines refer to the shared folder beside the checkout, which a clone of the"
        f" repository does not have (point to docs/ instead): {', '.join(found)}"
    )


def test_the_readme_shows_the_architecture_diagram():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"!\[[^\]]*\]\(diagrams/architecture\.svg\)", readme)


def test_the_index_links_every_page_of_docs():
    index = {target.split("#")[0] for _, target in links(DOCS / "README.md")}
    pages = {path.name for path in DOCS.glob("*.md") if path.name != "README.md"}
    assert pages <= index, f"docs/README.md does not link {', '.join(sorted(pages - index))}"


def test_operations_names_every_setting():
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    names = [f.name.upper() for f in dataclasses.fields(Settings) if f.name != "fhir_server"]
    # FHIR_SERVER_* are read into one field, Settings.fhir_server.
    names += [f"FHIR_SERVER_{f.name.upper()}" for f in dataclasses.fields(FhirServerSettings)]
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, (
        f"docs/operations.md (Settings) does not document {', '.join(missing)}:"
        " add each, with its default and meaning"
    )


def test_mapping_lists_every_built_in_script():
    text = (DOCS / "mapping.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([A-Za-z0-9_]+)` \| (cleaning|merging) \|", text, re.M))
    registry = ScriptRegistry.default()
    scripts = {(name, "cleaning") for name in registry.names("cleaning")} | {
        (name, "merging") for name in registry.names("merging")
    }
    assert not scripts - rows, (
        "docs/mapping.md (Every built-in script) lacks a row for "
        + ", ".join(f"{name} ({kind})" for name, kind in sorted(scripts - rows))
    )
    assert not rows - scripts, (
        "docs/mapping.md (Every built-in script) has a row for no built-in script: "
        + ", ".join(f"{name} ({kind})" for name, kind in sorted(rows - scripts))
    )


def test_slug_is_githubs():
    assert slug("A group's value") == "a-groups-value"
    assert slug("Each SQL input: script, cast, concept map") == (
        "each-sql-input-script-cast-concept-map"
    )
    assert slug("Live sources (Kafka Connect)") == "live-sources-kafka-connect"
    assert slug("What `make run` does") == "what-make-run-does"
