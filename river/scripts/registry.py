"""The script registry: built-in scripts, the user's own, found by name.

See the package docstring (`river.scripts`) for how users write their scripts.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, TypeVar, overload

from river.errors import ConfigurationError, RiverError
from river.scripts import cleaning as _cleaning
from river.scripts import merging as _merging
from river.scripts import temporal as _temporal

Kind = Literal["cleaning", "merging"]
CleaningScript = Callable[[Any], Any]
MergingScript = Callable[..., Any]
F = TypeVar("F", bound=Callable[..., Any])

CLEANING: Kind = "cleaning"
MERGING: Kind = "merging"
_MARKS = "__river_scripts__"


class UnknownScript(RiverError, LookupError):
    """A script name that the registry does not know."""

    def __init__(self, name: str, kind: str, hint: str = "") -> None:
        self.name = name
        self.kind = kind
        super().__init__(f"unknown {kind} script {name!r}" + (f" ({hint})" if hint else ""))


class ScriptLoadError(ConfigurationError):
    """User scripts that cannot be loaded; the message names the file or module."""

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"user scripts {location}: {reason}")


@overload
def cleaning_script(func: F, /) -> F: ...
@overload
def cleaning_script(*, name: str | None = None, override: bool = False) -> Callable[[F], F]: ...
def cleaning_script(
    func: F | None = None, /, *, name: str | None = None, override: bool = False
) -> F | Callable[[F], F]:
    """Mark a function as a cleaning script (one value in, one value out).

    `@cleaning_script` registers it under its own name; `name=` gives another;
    `override=True` lets it replace the built-in script of that name.
    """
    return _mark(CLEANING, func, name, override)


@overload
def merging_script(func: F, /) -> F: ...
@overload
def merging_script(*, name: str | None = None, override: bool = False) -> Callable[[F], F]: ...
def merging_script(
    func: F | None = None, /, *, name: str | None = None, override: bool = False
) -> F | Callable[[F], F]:
    """Mark a function as a merging script (the group's values in, one value out).

    Same options as `cleaning_script`.
    """
    return _mark(MERGING, func, name, override)


class ScriptRegistry:
    """Cleaning and merging scripts by name.

    `ScriptRegistry.default(...)` gives the built-in scripts (those bound to a
    time zone use the source's) and the user's own. The constructor takes
    plain tables, for tests and special cases.
    """

    def __init__(
        self,
        cleaning: Mapping[str, CleaningScript] | None = None,
        merging: Mapping[str, MergingScript] | None = None,
        timezone: dt.tzinfo | None = None,
    ) -> None:
        self._tables: dict[str, dict[str, Callable[..., Any]]] = {
            CLEANING: dict(cleaning or {}),
            MERGING: dict(merging or {}),
        }
        self._user_origins: dict[tuple[str, str], str] = {}
        self.timezone: dt.tzinfo = timezone or _temporal.parse_timezone(_temporal.DEFAULT_TIMEZONE)

    @classmethod
    def default(
        cls, timezone: str = _temporal.DEFAULT_TIMEZONE, extra: str | None = None
    ) -> ScriptRegistry:
        """The built-in scripts, date-times read in `timezone`, plus the user's
        scripts found at `extra` (a module name, a `.py` file or a folder of them).

        Raises ValueError for a wrong time zone and ScriptLoadError for user
        scripts that cannot be loaded.
        """
        zone = _temporal.parse_timezone(timezone)
        registry = cls(builtin_cleaning_scripts(zone), builtin_merging_scripts(zone), zone)
        if extra and extra.strip():
            registry._add_user_scripts(extra.strip())
        return registry

    def cleaning(self, name: str) -> CleaningScript:
        """The cleaning script called `name`; raises UnknownScript."""
        try:
            return self._tables[CLEANING][name]
        except KeyError:
            raise self._unknown(name, CLEANING) from None

    def merging(self, name: str) -> MergingScript:
        """The merging script called `name`; raises UnknownScript."""
        try:
            return self._tables[MERGING][name]
        except KeyError:
            raise self._unknown(name, MERGING) from None

    def is_cleaning(self, name: str) -> bool:
        return name in self._tables[CLEANING]

    def is_merging(self, name: str) -> bool:
        return name in self._tables[MERGING]

    def names(self, kind: Kind | None = None) -> list[str]:
        """The script names of `kind` ("cleaning" or "merging"; both when None), sorted."""
        if kind is None:
            return sorted(set(self._tables[CLEANING]) | set(self._tables[MERGING]))
        return sorted(self._tables[kind])

    # -- below: user scripts -------------------------------------------------------------

    def _unknown(self, name: str, kind: Kind) -> UnknownScript:
        if name in NOT_SCRIPTS:
            return UnknownScript(name, kind, NOT_SCRIPTS[name])
        other = MERGING if kind == CLEANING else CLEANING
        if name in self._tables[other]:
            return UnknownScript(name, kind, f"{name!r} is a {other} script")
        close = difflib.get_close_matches(str(name), self._tables[kind], n=1)
        return UnknownScript(name, kind, f"did you mean {close[0]!r}?" if close else "")

    def _add_user_scripts(self, location: str) -> None:
        modules = list(_load_modules(location))
        found = 0
        for origin, module in modules:
            for func in list(vars(module).values()):
                marks = getattr(func, _MARKS, None) if callable(func) else None
                if type(marks) is not tuple:
                    continue
                for mark in marks:
                    self._register(mark, func, origin)
                    found += 1
        if not found:
            raise ScriptLoadError(
                location,
                "no script found: mark functions with @cleaning_script or @merging_script "
                "(from river.scripts)",
            )

    def _register(self, mark: _Mark, func: Callable[..., Any], origin: str) -> None:
        table = self._tables[mark.kind]
        current = table.get(mark.name)
        if current is func or (
            current is not None and _source(current) == _source(func) != (None, None)
        ):
            return  # the same function, imported by a second user module
        origin = _source(func)[0] or origin
        where = f"{mark.kind} script {mark.name!r} ({_qualname(func)})"
        earlier = self._user_origins.get((mark.kind, mark.name))
        if earlier is not None:
            raise ScriptLoadError(
                origin, f"{mark.kind} script {mark.name!r} is also defined in {earlier}"
            )
        if current is not None and not mark.override:
            raise ScriptLoadError(
                origin,
                f"{mark.kind} script {mark.name!r} has the name of a built-in script; "
                f"write @{mark.kind}_script(override=True) to replace the built-in",
            )
        if mark.kind == CLEANING and not _takes_one_value(func):
            raise ScriptLoadError(origin, f"{where} must take exactly one value")
        table[mark.name] = func
        self._user_origins[(mark.kind, mark.name)] = origin


def builtin_cleaning_scripts(timezone: dt.tzinfo) -> dict[str, CleaningScript]:
    """The built-in cleaning scripts, date-times without offset read in `timezone`."""
    return {
        "binary_to_bool_1": _cleaning.binary_to_bool_1,
        "binary_to_bool_2": _cleaning.binary_to_bool_2,
        "clean_address": _cleaning.clean_address,
        "clean_codes": _cleaning.clean_codes,
        "clean_date": _temporal.clean_date,
        "clean_dateTime": functools.partial(_temporal.clean_dateTime, tz=timezone),
        "clean_epoch_dateTime": functools.partial(_temporal.clean_epoch_dateTime, tz=timezone),
        "clean_instant": functools.partial(_temporal.clean_instant, tz=timezone),
        "clean_long_text_ORBIS": _cleaning.clean_long_text_ORBIS,
        "clean_phone": _cleaning.clean_phone,
        "clean_quantity": _cleaning.clean_quantity,
        "clean_time": _temporal.clean_time,
        "code_to_empty": _cleaning.code_to_empty,
        "make_title": _cleaning.make_title,
        "map_2_true": _cleaning.map_2_true,
        "map_deceased": _cleaning.map_deceased,
        "map_family_situation": _cleaning.map_family_situation,
        "map_gender": _cleaning.map_gender,
        "map_gender_numeric": _cleaning.map_gender_numeric,
        "map_intent": _cleaning.map_intent,
        "map_marital_status": _cleaning.map_marital_status,
        "map_permission": _cleaning.map_permission,
        "map_priority": _cleaning.map_priority,
        "map_status": _cleaning.map_status,
        "string_to_bool": _cleaning.string_to_bool,
        "strip": _cleaning.strip,
        "zero_to_empty": _cleaning.zero_to_empty,
    }


def builtin_merging_scripts(timezone: dt.tzinfo) -> dict[str, MergingScript]:
    """The built-in merging scripts, date-times without offset read in `timezone`."""
    return {
        "merge_concat": _merging.merge_concat,
        "merge_concat_without_separator": _merging.merge_concat_without_separator,
        "merge_datetime": functools.partial(_temporal.merge_datetime, tz=timezone),
        "merge_insee": _merging.merge_insee,
        "merge_instant": functools.partial(_temporal.merge_instant, tz=timezone),
        "merge_status": _merging.merge_status,
        "select_first_not_empty": _merging.select_first_not_empty,
        "select_max": _merging.select_max,
        "select_min": _merging.select_min,
    }


# Names of the original's library that are no script a mapping can name, and why.
NOT_SCRIPTS = {
    "if_valid": (
        "if_valid is not a one-value script: the original built a cleaning script from two "
        "functions, a test and a value; write that script as a user script (CUSTOM_SCRIPTS)"
    ),
}


def unknown_script_message(name: str, kind: str) -> str:
    """What to say of a script name of `kind` that no registry knows; for a name
    of the original's library that is no script (`if_valid`), why.
    """
    return str(UnknownScript(name, kind, NOT_SCRIPTS.get(name, "")))


# -- below: private helpers --------------------------------------------------------------


@dataclass(frozen=True)
class _Mark:
    kind: Kind
    name: str
    override: bool


def _mark(kind: Kind, func: Any, name: str | None, override: bool) -> Any:
    def decorate(target: F) -> F:
        if not callable(target):
            raise TypeError(f"@{kind}_script marks a function, not {target!r}")
        script_name = name if name is not None else target.__name__
        if not isinstance(script_name, str) or not script_name:
            raise TypeError(f"@{kind}_script: a script name is a non-empty string, not {name!r}")
        marks = getattr(target, _MARKS, ())
        setattr(target, _MARKS, (*marks, _Mark(kind, script_name, bool(override))))
        return target

    return decorate if func is None else decorate(func)


def _load_modules(location: str) -> Iterable[tuple[str, ModuleType]]:
    """(origin, module) for each module that `location` names."""
    path = Path(location).expanduser()
    looks_like_path = location.endswith(".py") or "/" in location or os.sep in location
    if not looks_like_path and not path.exists():
        return [(location, _import_module(location))]
    if not path.exists():
        raise ScriptLoadError(location, "no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        if not files:
            raise ScriptLoadError(
                location, "the folder holds no .py file (files named _*.py are skipped)"
            )
    else:
        files = [path]
    return [(str(file), _exec_file(file)) for file in files]


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and name.startswith(error.name):
            raise ScriptLoadError(
                name,
                "no such module, file or folder (give an importable module name, "
                "a .py file or a folder of .py files)",
            ) from error
        raise ScriptLoadError(name, _describe(error, None)) from error
    except Exception as error:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec and spec.origin else None
        raise ScriptLoadError(
            f"{name} ({origin})" if origin else name, _describe(error, origin)
        ) from error


def _exec_file(path: Path) -> ModuleType:
    resolved = path.resolve()
    module_name = f"_river_user_scripts_{zlib.crc32(str(resolved).encode()):08x}_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise ScriptLoadError(str(path), "not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(resolved.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)  # so that the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise ScriptLoadError(str(path), _describe(error, str(resolved))) from error
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    return module


def _describe(error: BaseException, file: str | None) -> str:
    """`error` in one line, with the line of `file` where it happened."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, SyntaxError) or file is None:
        return text
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename == file
    ]
    return f"{text} (line {lines[-1]})" if lines else text


def _takes_one_value(func: Callable[..., Any]) -> bool:
    try:
        inspect.signature(func).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature (some builtins): trust it
        return True
    return True


def _source(func: Any) -> tuple[str | None, str | None]:
    """Where a function is defined: (file, qualified name), to know it loaded twice."""
    code = getattr(func, "__code__", None)
    return getattr(code, "co_filename", None), getattr(func, "__qualname__", None)


def _qualname(func: Any) -> str:
    return getattr(func, "__qualname__", None) or repr(func)
