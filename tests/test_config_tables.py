"""Typed configuration tables and sealed fields: the two shared foundations."""

from __future__ import annotations

import dataclasses

import pytest

from carecall.config import ConfigError, parse_table, register_table
from ivr.sealed import Sealer, SealError


@register_table("_example")
@dataclasses.dataclass(frozen=True)
class _Example:
    minutes: int = 15
    name: str = "x"
    on: bool = True

    def __post_init__(self) -> None:
        if self.minutes < 0:
            raise ConfigError(f"[_example] minutes must be >= 0, got {self.minutes}")


def test_a_table_is_parsed_with_defaults_and_types() -> None:
    assert parse_table("_example", {}) == _Example()
    assert parse_table("_example", {"minutes": 30, "on": False}) == _Example(minutes=30, on=False)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"minuts": 3}, "unknown setting [_example] minuts"),
        ({"minutes": "thirty"}, "[_example] minutes must be a whole number"),
        ({"minutes": True}, "[_example] minutes must be a whole number"),
        ({"minutes": -5}, "[_example] minutes must be >= 0"),
        ({"on": "yes"}, "[_example] on must be true or false"),
    ],
)
def test_a_bad_key_or_value_is_named(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_table("_example", raw)


def test_a_sealed_value_opens_only_with_its_key_and_context() -> None:
    sealer = Sealer(b"k" * 32)
    token = sealer.seal("4821", context="keysafe:resident:1")
    assert "4821" not in token
    assert sealer.open(token, context="keysafe:resident:1") == "4821"
    with pytest.raises(SealError):
        sealer.open(token, context="keysafe:resident:2")
    with pytest.raises(SealError):
        Sealer(b"j" * 32).open(token, context="keysafe:resident:1")
