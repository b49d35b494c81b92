"""The tier lists of tests/conftest.py name tests that exist.

A renamed module or test would otherwise leave its list quietly: a slow test would join
``bin/test --fast``, a database-neutral one would run twice.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import DATABASE_NEUTRAL, FUZZ, SLOW

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("entry", sorted({*SLOW, *FUZZ, *DATABASE_NEUTRAL}))
def test_each_listed_folder_module_and_test_exists(entry: str) -> None:
    module, _, test = entry.partition("::")
    path = ROOT / module
    assert path.is_dir() if module.endswith("/") else path.is_file(), f"{module} is gone"
    if test:
        assert re.search(rf"^def {re.escape(test)}\(", path.read_text(), re.MULTILINE), f"{entry} is gone"
