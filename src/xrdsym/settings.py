"""Settings of numbers from a params section, checked: what :class:`xrdsym.peaks.PeakSettings`
and :class:`xrdsym.indexing.IndexSettings` read from ``params.yaml``.

Sits at the bottom of the package (it imports only :mod:`xrdsym.errors`), so the science
modules that hold such settings can use it.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import fields
from numbers import Real
from typing import Any, TypeVar

from xrdsym.errors import ParamsError

T = TypeVar("T")


def settings_from_params(
    cls: type[T], section: Any, prefix: str, zero_allowed: Collection[str] = ()
) -> T:
    """An instance of the dataclass ``cls`` (every field an int or a float) from the params
    section named ``prefix``: missing keys keep their defaults; an unknown key, or a value that
    is not a finite number > 0 (>= 0 for the fields in ``zero_allowed``; a whole number >= 1
    for int fields), raises ParamsError naming ``prefix.key`` and the value."""
    if section is None:
        return cls()
    if not isinstance(section, dict):
        raise ParamsError(f"params.yaml: {prefix}: expected a mapping of settings, got {section!r}")
    known = {field.name: field for field in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ParamsError(
                f"params.yaml: unknown key '{prefix}.{key}' (known: {', '.join(known)})"
            )
        integer = known[key].type == "int"
        ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
        if integer:
            ok = ok and float(value).is_integer() and value >= 1
            need = "a whole number >= 1"
        elif key in zero_allowed:
            ok = ok and value >= 0
            need = "a number >= 0"
        else:
            ok = ok and value > 0
            need = "a number > 0"
        if not ok:
            raise ParamsError(f"params.yaml: {prefix}.{key}={value!r} is invalid: must be {need}")
        values[key] = int(value) if integer else float(value)
    return cls(**values)
