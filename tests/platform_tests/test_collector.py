"""The collector's setting for serving processes."""

from __future__ import annotations

import gc

from colony.platform.runtime import collector


def test_a_serving_process_freezes_its_start_up_and_collects_less_often():
    before = gc.get_threshold()
    try:
        start_up = [[] for _ in range(10)]
        collector.settle_after_start()
        assert gc.get_freeze_count() >= len(start_up)
        assert gc.get_threshold() == (
            collector.YOUNG_ALLOCATIONS,
            collector.OLDER_PASSES,
            collector.OLDER_PASSES,
        )
        # Cycles made after start-up are still collected.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
