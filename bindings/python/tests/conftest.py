"""Shared fixtures: the small models under Tests/Fixtures and a call recorder.

Set NODUS_LIBRARY to test a particular libnodus.so (else the package's search
order applies).
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the bindings/python folder, so `import nodus` works uninstalled

REPOSITORY = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
FIXTURES = os.path.join(REPOSITORY, "Tests", "Fixtures")
HEADER = os.path.join(REPOSITORY, "include", "nodus.h")


def fixture_path(name):
    """The path of a fixture under Tests/Fixtures (committed; a missing one is a failure)."""
    path = os.path.join(FIXTURES, name)
    if not os.path.exists(path):
        pytest.fail(f"fixture {name} is missing: regenerate with tests/reference/make_model_fixtures.py")
    return path


@pytest.fixture
def dit():
    import nodus

    with nodus.load(fixture_path("dit-tiny")) as model:
        yield model


@pytest.fixture
def vae():
    import nodus

    with nodus.load(fixture_path("vae-tiny")) as model:
        yield model


@pytest.fixture
def ddim():
    import nodus

    with nodus.Scheduler.from_config(fixture_path("scheduler-ddim")) as scheduler:
        yield scheduler
