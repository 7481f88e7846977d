"""The test data ship with the repository (test/data), gzip'd, and read as they are:
a fresh clone needs nothing beside it."""

from __future__ import annotations

import csv
import gzip
import re

import pytest

from test.conftest import CONCEPT_MAPS, FORMAT_EXAMPLES, MIMIC_DEMO, MIMIC_DEMO_MAPPING, TEST_DATA
from test.utils import dbutil

SCHEMA_TABLES = re.findall(
    r"^CREATE TABLE IF NOT EXISTS (\w+)", dbutil.SCHEMA_PATH.read_text(), re.MULTILINE
)


def test_the_demo_ships_every_table_of_the_schema_with_its_licence():
    assert len(SCHEMA_TABLES) == 16
    files = dbutil.csv_files(MIMIC_DEMO)
    assert sorted(files) == sorted(SCHEMA_TABLES)
    assert all(path.name.endswith(".csv.gz") for path in files.values())
    assert MIMIC_DEMO == dbutil.DEFAULT_DEMO_DIR
    licence = (MIMIC_DEMO / "LICENSE.txt").read_text()
    assert licence.startswith("## ODC OPEN DATABASE LICENSE (ODBL)")
    readme = (TEST_DATA / "README.md").read_text()
    for words in ("MIMIC-III Clinical Database Demo v1.4", "PhysioNet", "Open Database License",
                  "Johnson", "Pollard", "Mark", "Pyrog"):  # fmt: skip
        assert words in readme, words


def test_every_csv_reads_with_the_columns_of_its_table():
    schema = dbutil.SCHEMA_PATH.read_text()
    for table, path in dbutil.csv_files(MIMIC_DEMO).items():
        with dbutil.open_csv(path) as f:
            header = next(csv.reader(f))
        block = re.search(rf"CREATE TABLE IF NOT EXISTS {table} \((.*?)\n\);", schema, re.S)
        assert block, table
        columns = re.findall(r"^\s+(\w+)\s+\w", block.group(1), re.MULTILINE)
        assert header == [c for c in columns if c.lower() not in ("primary", "unique")], table


def test_the_gzip_files_are_the_same_bytes_everywhere():
    """gzip -9n: no file name, no time in the header (a re-packing changes nothing)."""
    for path in sorted(TEST_DATA.rglob("*.gz")):
        header = path.read_bytes()[:10]
        assert header[:3] == b"\x1f\x8b\x08", path  # gzip, deflate
        assert header[3] == 0 and header[4:8] == bytes(4), f"{path}: gzip it with -n"


def test_the_mappings_are_plain_copies_of_the_shipped_files():
    for plain, packed in (
        (MIMIC_DEMO_MAPPING, TEST_DATA / "mappings" / "mimic-demo.json.gz"),
        (CONCEPT_MAPS, TEST_DATA / "mappings" / "concept_maps.json.gz"),
    ):
        assert plain.name == packed.name.removesuffix(".gz")
        assert plain.read_bytes() == gzip.decompress(packed.read_bytes())
    names = sorted(p.name for p in FORMAT_EXAMPLES.iterdir())
    packed = sorted(p.name for p in (TEST_DATA / "mappings" / "format-examples").iterdir())
    assert names == [name.removesuffix(".gz") for name in packed]


def test_unpacked_gives_plain_files_and_folders(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert dbutil.unpacked(plain) == plain  # a plain file is itself
    (tmp_path / "packed.json.gz").write_bytes(gzip.compress(b'{"a": 1}'))
    copy = dbutil.unpacked(tmp_path / "packed.json")
    assert copy.name == "packed.json" and copy.read_bytes() == b'{"a": 1}'
    assert dbutil.unpacked(tmp_path / "packed.json") == copy  # once per process
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "one.json.gz").write_bytes(gzip.compress(b"1"))
    (folder / "two.json").write_bytes(b"2")
    copied = dbutil.unpacked(folder)
    assert copied.name == "folder" and copied != folder
    assert {p.name: p.read_bytes() for p in copied.iterdir()} == {
        "one.json": b"1",
        "two.json": b"2",
    }
    (tmp_path / "only-plain").mkdir()
    assert dbutil.unpacked(tmp_path / "only-plain") == tmp_path / "only-plain"
    with pytest.raises(FileNotFoundError, match="missing.json.gz"):
        dbutil.unpacked(tmp_path / "missing.json")


def test_csv_files_reads_plain_and_gzipped_names(tmp_path):
    (tmp_path / "a.csv").write_text("x\n")
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(b"y\n"))
    (tmp_path / "notes.txt").write_text("")
    assert dbutil.csv_files(tmp_path) == {"a": tmp_path / "a.csv", "b": tmp_path / "b.csv.gz"}
    with dbutil.open_csv(tmp_path / "b.csv.gz") as f:
        assert f.read() == "y\n"
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(b"x\n"))
    with pytest.raises(ValueError, match="both a.csv and a.csv.gz"):
        dbutil.csv_files(tmp_path)
