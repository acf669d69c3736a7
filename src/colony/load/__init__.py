"""``colony load``: an open-loop load generator for the marketplace.

Arrivals are due on a fixed (or stepped) schedule whatever the server does, latency counts
from when each was due, and every arrival ends ok, failed or unknown, as in Jepsen's
histories. ``run_load(LoadConfig(...))`` returns a ``LoadReport``: the summary, a per-second
timeline, and every checkout with its Idempotency-Key and order id, for checkers.
"""

from colony.load.buyers import DEMO_PASSWORD, LOAD_BUYER_PASSWORD
from colony.load.config import DEFAULT_URL, InvalidLoadConfig, LoadConfig, parse_mix
from colony.load.histogram import Histogram, Percentiles
from colony.load.outcomes import Outcome
from colony.load.pacing import Step, parse_steps
from colony.load.report import CheckoutRecord, KindSummary, LoadReport, Second
from colony.load.runner import Progress, run_load
from colony.load.workload import DEFAULT_MIX, KINDS, SetupError

__all__ = [
    "DEFAULT_MIX",
    "DEFAULT_URL",
    "DEMO_PASSWORD",
    "KINDS",
    "LOAD_BUYER_PASSWORD",
    "CheckoutRecord",
    "Histogram",
    "InvalidLoadConfig",
    "KindSummary",
    "LoadConfig",
    "LoadReport",
    "Outcome",
    "Percentiles",
    "Progress",
    "Second",
    "SetupError",
    "Step",
    "parse_mix",
    "parse_steps",
    "run_load",
]
