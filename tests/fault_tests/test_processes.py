"""Process faults against stand-in processes: a pause stops a process answering until it is
healed; a pid that is not one of the topology's processes is never signalled."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from fault_support import fake_services, write_processes

from colony.distributed.processes import ProcessRecord
from colony.faults import InjectionFailed, TopologyNotRunning, fault_from_spec
from colony.faults.probes import answers
from colony.faults.topology import RunningTopology, process_state


async def test_a_paused_process_answers_nothing_until_healed(tmp_path):
    with fake_services(tmp_path, {"orders": None}) as topology:
        url = topology.process("orders-1").url
        pid = topology.owned_pid("orders-1")
        assert pid is not None
        fault = fault_from_spec("pause:orders", topology)
        await fault.inject()
        try:
            assert process_state(pid) == "T"
            assert not await answers(url, "/health/live")
        finally:
            await fault.heal()
        assert process_state(pid) != "T"
        assert await answers(url, "/health/live")


async def test_a_heal_from_elsewhere_continues_the_process(tmp_path):
    with fake_services(tmp_path, {"orders": None}) as topology:
        await fault_from_spec("pause:orders-1", topology).inject()
        # Another command, knowing only the spec:
        again = fault_from_spec("pause:orders-1", RunningTopology.load(tmp_path))
        await again.heal()
        assert await answers(topology.process("orders-1").url, "/health/live")


async def test_a_pid_that_is_not_the_topologys_is_never_signalled(tmp_path):
    # The file names a pid that runs, but not as a child of its supervisor (this process):
    # this process's own parent. Neither a kill nor a pause may touch it.
    records = {
        "orders-1": ProcessRecord(
            service="orders", pid=os.getppid(), url="http://127.0.0.1:9", restarts=0
        ),
    }
    topology = write_processes(tmp_path, records)
    assert topology.owned_pid("orders-1") is None
    for spec in ("kill:orders", "pause:orders-1"):
        with pytest.raises(InjectionFailed, match="not running"):
            await fault_from_spec(spec, topology).inject()
    assert process_state(os.getppid()) not in ("T", "Z", None)


def test_no_running_topology_is_said_plainly(tmp_path):
    with pytest.raises(TopologyNotRunning, match="no running topology"):
        RunningTopology.load(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    records = {"orders-1": ProcessRecord(service="orders", pid=None, url="", restarts=0)}
    write_processes(tmp_path, records)
    table = (tmp_path / "processes.json").read_text().replace(str(os.getpid()), str(gone.pid))
    (tmp_path / "processes.json").write_text(table)
    with pytest.raises(TopologyNotRunning, match="has stopped"):
        RunningTopology.load(tmp_path)


async def test_probes_tell_a_broker_by_its_port(tmp_path):
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert await answers(f"nats://127.0.0.1:{port}")
    assert not await answers(f"nats://127.0.0.1:{port}")
