from __future__ import annotations

import pytest

from unetkit.config import parse_duration
from unetkit.errors import ConfigError


@pytest.mark.parametrize(
    "text, seconds",
    [("600", 600.0), ("90s", 90.0), ("10m", 600.0), ("1h30m", 5400.0), ("1.5h", 5400.0), ("2m30s", 150.0), (" 10M ", 600.0)],
)
def test_durations_in_hours_minutes_and_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "10m5", "-5m", "m"])
def test_a_duration_that_is_not_one_names_the_text_and_the_forms(text: str) -> None:
    with pytest.raises(ConfigError, match="1h30m"):
        parse_duration(text)
