"""Durable orchestrated sagas: steps with compensations, resumed after a crash."""

from pathlib import Path

from colony.platform.saga.definition import TRANSIENT, SagaDefinition, SagaHooks, Step
from colony.platform.saga.engine import LeaseLost, SagaEngine, SagaPolicy, SagaRecord

SAGA_MIGRATIONS = Path(__file__).parent / "migrations"

__all__ = [
    "SAGA_MIGRATIONS",
    "TRANSIENT",
    "LeaseLost",
    "SagaDefinition",
    "SagaEngine",
    "SagaHooks",
    "SagaPolicy",
    "SagaRecord",
    "Step",
]
