import pytest

from tiny_models import randomized


@pytest.fixture
def tiny_model():
    return randomized()
