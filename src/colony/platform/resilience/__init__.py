"""Resilience policies for every call that leaves a process: deadlines that travel, retries
bounded by a budget, circuit breakers, bulkheads and outlier ejection. One pipeline
(:class:`Dependency`), configured per dependency, used by every client the platform gives."""

from colony.platform.resilience.breaker import BreakerPolicy, CircuitBreaker
from colony.platform.resilience.budget import BudgetPolicy, RetryBudget
from colony.platform.resilience.bulkhead import Bulkhead, BulkheadPolicy
from colony.platform.resilience.pipeline import (
    ATTEMPT_HEADER,
    CallPolicy,
    Dependency,
    NotSent,
    Resilience,
    attempt_from_header,
    attempt_number,
    retried_above,
)

__all__ = [
    "ATTEMPT_HEADER",
    "BreakerPolicy",
    "BudgetPolicy",
    "Bulkhead",
    "BulkheadPolicy",
    "CallPolicy",
    "CircuitBreaker",
    "Dependency",
    "NotSent",
    "Resilience",
    "RetryBudget",
    "attempt_from_header",
    "attempt_number",
    "retried_above",
]
