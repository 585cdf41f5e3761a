"""The serving tests' engine: the tiny model with a random (non-zero) LoRA adapter, built once per session."""

import pytest


@pytest.fixture(scope="session")
def engine(tiny_peft_engine):
    return tiny_peft_engine
