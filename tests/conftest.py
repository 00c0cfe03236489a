"""Shared fixtures: unique region names, and a check that no test leaves
anything in the shared-memory directory."""
from __future__ import annotations

import os
import uuid
from typing import Callable, Iterator, List

import pytest

# Windows keeps regions as named mappings, not files: no directory to watch
# unless SHMX_DIR selects file-backed regions.
SHM_DIR = os.environ.get("SHMX_DIR") or ("/dev/shm" if os.name != "nt" else "")
PREFIX = "shmxtest-"


def _ours() -> List[str]:
    try:
        return sorted(f for f in os.listdir(SHM_DIR) if f.startswith(PREFIX))
    except FileNotFoundError:
        return []


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("cam")`` -> ``"shmxtest-cam-<10 hex>"``.  A region of
    that name still present after the test is removed and fails the test
    (tests that deliberately leave one, e.g. after kill -9, set
    ``request.node.allow_leftovers = True``)."""
    made: List[str] = []

    def make(tag: str = "r") -> str:
        name = f"{PREFIX}{tag}-{uuid.uuid4().hex[:10]}"
        made.append(name)
        return name

    yield make
    left = []
    for name in made:
        for f in os.listdir(SHM_DIR) if os.path.isdir(SHM_DIR) else []:
            if f == name or f.startswith(name + "~"):
                os.unlink(os.path.join(SHM_DIR, f))
                left.append(f)
    if left and not getattr(request.node, "allow_leftovers", False):
        pytest.fail(f"{request.node.name} left regions behind: {left}")


@pytest.fixture
def name(unique_name: Callable[[str], str]) -> str:
    """One unique region name."""
    return unique_name("t")


@pytest.fixture(autouse=True, scope="session")
def no_leftovers() -> Iterator[None]:
    """Fail the session if tests left regions behind."""
    before = set(_ours())
    yield
    left = set(_ours()) - before
    assert not left, f"tests left regions in {SHM_DIR}: {sorted(left)}"
