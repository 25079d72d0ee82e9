"""Settings of numbers from a params section: defaults, zero where allowed, one-line errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from xrdsym.errors import ParamsError
from xrdsym.settings import settings_from_params


@dataclass(frozen=True)
class Example:
    count: int = 3
    width: float = 0.5
    share: float = 0.1


def read(section):
    return settings_from_params(Example, section, "example", zero_allowed={"share"})


def test_missing_keys_keep_their_defaults():
    assert read(None) == Example()
    assert read({"width": 2}) == Example(width=2.0)
    assert read({"share": 0, "count": 5.0}) == Example(count=5, share=0.0)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"colour": 1}, r"unknown key 'example\.colour'"),
        ({"width": 0}, r"example\.width=0 is invalid: must be a number > 0"),
        ({"share": -0.1}, r"example\.share=-0\.1 is invalid: must be a number >= 0"),
        ({"count": 2.5}, r"example\.count=2\.5 is invalid: must be a whole number >= 1"),
        ({"width": True}, r"example\.width=True"),
        ({"width": float("inf")}, r"example\.width=inf"),
        ([1, 2], r"example: expected a mapping"),
    ],
)
def test_bad_values_name_the_key(section, message):
    with pytest.raises(ParamsError, match=message):
        read(section)
