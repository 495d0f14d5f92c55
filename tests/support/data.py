"""The data the project provides beside its checkout, in ../shared/data (GSM8K's train and test
splits, MATH-500). A test that reads it asks for it here: on a clone without it the test is
skipped, but where the data is promised (CI, or TESTS_REQUIRE_DATA=1) it fails, so a
missing file can never turn a green run into one that tested less."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REQUIRE = "TESTS_REQUIRE_DATA"


def data_required() -> bool:
    """Is the data promised here? TESTS_REQUIRE_DATA, else CI (which CI services set)."""
    value = os.environ.get(REQUIRE, os.environ.get("CI", ""))
    return value.strip().lower() not in ("", "0", "false", "no")


def shared_data(name: str = "") -> Path:
    """The path of `name` in ../shared/data (the folder itself without a name); a test that
    asks for a missing one is skipped, or fails where the data is required."""
    path = DATA / name if name else DATA
    if not path.exists():
        why = f"{path} is missing: the project's data beside the checkout (../shared/data)"
        if data_required():
            pytest.fail(f"{why}; {REQUIRE} or CI is set, so the data must be there")
        pytest.skip(why)
    return path
