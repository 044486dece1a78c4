"""Shared test fixtures. Tests that need the real datasets look for them in $KML_SHARED_DATA (default:
../shared/data beside the clone) and skip without them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KML_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real fixture files (official Omniglot subsets, mini-ImageNet CSVs and images, CUB, CIFAR meta)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data fixtures not found at {SHARED_DATA} (set KML_SHARED_DATA to their folder)")
    return SHARED_DATA
