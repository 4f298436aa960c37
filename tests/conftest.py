from pathlib import Path

import pytest
from tiny_models import randomized

pytest_plugins = ["node_env"]  # the node tier's fixtures (env, loaded) for every module that uses them

TESTS = Path(__file__).resolve().parent
TIER_OF_FOLDER = {"integration": "integration", "browser": "browser"}
SLOW_MODULES = {"test_train.py", "test_train_v2a.py"}


def pytest_collection_modifyitems(config, items):
    """Mark each test with its tier (pyproject.toml lists the markers), so that `-m` picks tiers."""
    for item in items:
        path = Path(str(item.fspath)).resolve()
        folder = path.parent.name if path.parent != TESTS else None
        if folder in TIER_OF_FOLDER:
            item.add_marker(TIER_OF_FOLDER[folder])
        if path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def tiny_model():
    return randomized()
