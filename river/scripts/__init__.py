"""Cleaning and merging scripts: the names Pyrog mappings call, and the user's own.

A **cleaning script** takes one source value and returns one (it runs on each
SQL input before the cast to the attribute's FHIR type). A **merging script**
takes the values of an input group, SQL input values then static values in
mapping order, and returns one. Values come from SQL: str, int, float,
Decimal, bool, date, datetime, time or None.

The built-in scripts are those of the original fhir-river, under the same
names, and give the same value for every input the original handled on
purpose. Where the original crashed (most of its scripts did on any value
that is not text), gave its input back because it could not read it, missed
an obvious spelling of a word it maps (case, surrounding spaces, a number
written as text), or contradicted its own docstring, they do better, and
each script's docstring says how. So: a cleaning script returns None for
None and blank text (the mapping scripts whose original gave a code for a
missing value, such as `map_marital_status` -> `UNK`, give it); where the
original returned nothing for a value it did not know, they return None;
only the date and time scripts raise, a `BadValue` (a ValueError) saying why
they cannot read a value (the original gave it back untouched), which the
transformation reports as an error of that instance. `if_valid`, which the original built from two
functions, is no script: a mapping naming it is refused, saying so.

    scripts = ScriptRegistry.default(timezone="Europe/Paris", extra="my_scripts/")
    scripts.cleaning("clean_dateTime")("2164-10-23 21:09:00")
    # '2164-10-23T21:09:00+02:00'
    scripts.merging("merge_concat")(10006, "(4)")   # '10006 (4)'

`clean_dateTime`, `clean_instant`, `merge_datetime` and `merge_instant` give
a date-time that has no offset the offset of the source's time zone
(`SOURCE_TIMEZONE`), and `clean_epoch_dateTime` writes its instant in it: a
fixed offset such as `+02:00` (the default, which existing Pyrog mappings
were written against) or an IANA name such as `Europe/Paris` (daylight saving
time included).

## Adding your own scripts

Write plain functions in a Python file and mark them with a decorator:

    # /etc/river/scripts/hospital.py
    from river.scripts import cleaning_script, merging_script

    @cleaning_script
    def map_ward(value):              # one value in, one out; None may come in
        return None if value is None else WARDS.get(value.strip(), "other")

    @merging_script(name="full_address")
    def join_address(*values):        # the group's values in, one value out
        return ", ".join(str(v) for v in values if v)

    @cleaning_script(override=True)   # replaces the built-in clean_phone
    def clean_phone(value):
        ...

then point the `CUSTOM_SCRIPTS` setting (`ScriptRegistry.default(extra=...)`)
at one of:
- a `.py` file;
- a folder: each of its `.py` files is loaded, except those whose name starts
  with `_`, which can hold shared helpers (the folder is importable while the
  files load, so `from _helpers import x` works);
- an importable module name (`hospital_scripts`, `package.scripts`); a name
  that exists as a file or folder is read as that file or folder.

A script is registered under its function's name, or under `name=`. A user
script may replace a built-in one only when it says so with `override=True`;
otherwise, as when two user files define the same name, loading fails with a
message naming the file. So does a file that raises on import (with its line)
or a location that defines no script at all. Mappings then use the new names
like the built-in ones.

A script that cannot take a value raises. The error of the instance names the
attribute, the column, the script and the value's shape ("a text of 14
characters"), never the value: it is read by people who may not see patient data.
For the same reason it shows the message of a `BadValue` only, which a script
words without the value; any other exception is shown by its type alone:

    from river.scripts import BadValue, cleaning_script

    @cleaning_script
    def ward_code(value):
        if value and not value[:1].isalpha():
            raise BadValue("a ward code starts with a letter")
        ...
"""

from river.errors import BadValue
from river.scripts.registry import (
    ScriptLoadError,
    ScriptRegistry,
    UnknownScript,
    cleaning_script,
    merging_script,
)
from river.scripts.temporal import parse_timezone

__all__ = [
    "BadValue",
    "ScriptRegistry",
    "UnknownScript",
    "ScriptLoadError",
    "cleaning_script",
    "merging_script",
    "parse_timezone",
]
