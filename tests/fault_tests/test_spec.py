"""The spec grammar: every family parses from its examples; nonsense is refused with a
message saying what is wrong; names are checked against the running topology."""

from __future__ import annotations

import pytest
from fault_support import paper_topology

from colony.faults import FAMILIES, FaultSpecError, fault_from_spec
from colony.faults.database import DatabaseOutage
from colony.faults.provider import ProviderFault
from colony.faults.signals import ProcessKill, ProcessPause
from colony.faults.spec import parse, parse_duration, parse_share
from colony.faults.table import TableFault

REPLICAS = {"orders": 2, "payments": 1, "notifications": 1, "delivery": 1, "gateway": 1}


@pytest.fixture
def topology(tmp_path):
    return paper_topology(tmp_path, REPLICAS)


@pytest.mark.parametrize("example", [e for family in FAMILIES for e in family.examples])
def test_every_example_parses(example):
    assert parse(example).text == example


def test_durations_and_shares():
    assert parse_duration("200ms") == pytest.approx(0.2)
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("2m") == 120
    assert parse_duration("-30s", signed=True) == -30
    assert parse_duration("+1h", signed=True) == 3600
    assert parse_share("0.3") == 0.3
    assert parse_share("50%") == 0.5
    for bad in ("200", "ms", "1.5 s", "-3s", "2d", ""):
        with pytest.raises(FaultSpecError, match="unit"):
            parse_duration(bad)
    for bad in ("1.5", "-0.1", "150%", "half"):
        with pytest.raises(FaultSpecError, match="between 0 and 1"):
            parse_share(bad)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("meteor:orders", "no fault family 'meteor'"),
        ("", "no fault family"),
        ("kill", "kill is kill:TARGET"),
        ("kill:orders:now", "kill is kill:TARGET"),
        ("kill:Orders!", "a name like orders"),
        ("latency:orders:200ms", "CALLER->CALLEE"),
        ("latency:orders->payments", "latency is"),
        ("latency:orders->payments:200", "unit"),
        ("latency:orders->payments:-200ms", "unit"),
        ("latency:orders->payments:200ms:2", "between 0 and 1"),
        ("errors:orders->payments:explode", "kind of error"),
        ("errors:orders->payments:reset:0.5:x", "errors is"),
        ("partition:orders", "partition is"),
        ("broker:restart", "broker:kill or broker:pause"),
        ("provider:outage:0.5", "provider is"),
        ("provider:errors", "provider is"),
        ("provider:errors:3", "between 0 and 1"),
        ("provider:latency:0ms", "0 < P50"),
        ("provider:latency:500ms:100ms", "P50 ≤ P99"),
        ("slow-consumer:notifications", "slow-consumer is"),
        ("reorder:delivery:0ms", "longer than 0"),
        ("skew:payments", "skew is"),
        ("skew:payments:30", "unit"),
        ("skew:payments:+400d", "unit"),
        ("skew:payments:+9000h", "more than a year"),
    ],
)
def test_nonsense_is_refused_with_a_reason(spec, message):
    with pytest.raises(FaultSpecError, match=message):
        parse(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("kill:billing", "no service or process named 'billing'.*known: .*orders"),
        ("pause:orders-9", "no service or process named 'orders-9'"),
        ("latency:orders->billing:1s", "no service named 'billing'"),
        ("latency:orders->payments-1:1s", "must be a service, not one of its processes"),
        ("errors:nats->orders", "the broker makes no calls"),
        ("partition:orders|orders", "two services"),
        ("partition:orders-1|payments", "must be a service"),
        ("database:gateway", "no database"),
        ("duplicate:gateway", "consumes no events"),
        ("duplicate:billing", "no service named 'billing'"),
        ("skew:nats:+1s", "not Colony's"),
    ],
)
def test_names_are_checked_against_the_topology(topology, spec, message):
    with pytest.raises(FaultSpecError, match=message):
        fault_from_spec(spec, topology)


def test_process_faults_target_a_service_or_one_process(topology):
    every = fault_from_spec("kill:orders", topology)
    assert isinstance(every, ProcessKill) and every.names == ["orders-1", "orders-2"]
    one = fault_from_spec("pause:orders-2", topology)
    assert isinstance(one, ProcessPause) and one.names == ["orders-2"]
    broker = fault_from_spec("broker:kill", topology)
    assert isinstance(broker, ProcessKill) and broker.names == ["nats"] and broker.then_all_ready


def test_a_link_fault_goes_to_every_replica_of_the_caller(topology):
    fault = fault_from_spec("latency:orders->payments:200ms~50ms:0.5", topology)
    assert isinstance(fault, TableFault)
    assert [name for name, _ in fault.installs] == ["orders-1", "orders-2"]
    body = fault.installs[0][1]
    assert body == {
        "kind": "latency",
        "delay_ms": 200.0,
        "jitter_ms": 50.0,
        "probability": 0.5,
        "dependency": "payments",
        "id": "latency.orders.payments",
    }
    assert "200 ms latency" in fault.description and "50%" in fault.description


def test_errors_default_to_503_on_every_call(topology):
    fault = fault_from_spec("errors:gateway->orders", topology)
    assert isinstance(fault, TableFault)
    [(name, body)] = fault.installs
    assert name == "gateway-1"
    assert body["kind"] == "unavailable" and body["probability"] == 1.0
    reset = fault_from_spec("errors:gateway->orders:reset:0.5", topology)
    assert isinstance(reset, TableFault)
    assert reset.installs[0][1]["kind"] == "reset" and reset.installs[0][1]["probability"] == 0.5
    share_only = fault_from_spec("errors:orders-1->payment-provider:25%", topology)
    assert isinstance(share_only, TableFault)
    assert share_only.installs == [
        (
            "orders-1",
            {
                "kind": "unavailable",
                "probability": 0.25,
                "dependency": "payment-provider",
                "id": "unavailable.orders-1.payment-provider",
            },
        )
    ]


def test_a_partition_drops_calls_both_ways(topology):
    fault = fault_from_spec("partition:payments|orders", topology)
    assert isinstance(fault, TableFault)
    assert sorted((name, body["dependency"]) for name, body in fault.installs) == [
        ("orders-1", "payments"),
        ("orders-2", "payments"),
        ("payments-1", "orders"),
    ]
    assert {body["kind"] for _, body in fault.installs} == {"drop"}
    assert {body["id"] for _, body in fault.installs} == {"partition.orders.payments"}


def test_delivery_and_clock_faults(topology):
    duplicate = fault_from_spec("duplicate:notifications", topology)
    assert isinstance(duplicate, TableFault)
    assert duplicate.installs[0][1]["consumer"] == "notifications"
    slow = fault_from_spec("slow-consumer:notifications:500ms", topology)
    assert isinstance(slow, TableFault)
    assert slow.installs[0][1] == {
        "kind": "slow-consumer",
        "delay_ms": 500.0,
        "consumer": "notifications",
        "id": "slow-consumer.notifications",
    }
    reorder = fault_from_spec("reorder:delivery", topology)
    assert isinstance(reorder, TableFault)
    assert reorder.installs[0][1]["window_ms"] == 200.0
    skew = fault_from_spec("skew:orders:-5m", topology)
    assert isinstance(skew, TableFault)
    assert [n for n, _ in skew.installs] == ["orders-1", "orders-2"]
    assert skew.installs[0][1]["seconds"] == -300


def test_database_and_provider_faults(topology):
    database = fault_from_spec("database:payments", topology)
    assert isinstance(database, DatabaseOutage) and database.held
    provider = fault_from_spec("provider:timeouts:30%", topology)
    assert isinstance(provider, ProviderFault) and provider.changes == {"timeout_rate": 0.3}
    assert fault_from_spec("provider:outage", topology).changes == {"outage": True}  # type: ignore[attr-defined]
    latency = fault_from_spec("provider:latency:100ms", topology)
    assert latency.changes == {"latency": {"p50_ms": 100.0, "p99_ms": 200.0}}  # type: ignore[attr-defined]
