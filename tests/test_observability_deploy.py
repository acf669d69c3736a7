"""Prometheus, its alert rules and Grafana's dashboards, as deployed in every topology.

promtool (Debian's `prometheus` package) checks the rules, runs their unit tests and checks
each scrape configuration; without it those tests skip, unless ``COLONY_REQUIRE_SERVICES=1``
makes that a failure. The rest needs nothing installed: every metric a rule or a dashboard
queries is one Colony exports (CATALOGUE below), with labels it has; every alert has a unit
test that fires it; the dashboards are what deploy/generate.py makes, and read the datasource
Grafana is provisioned with; compose.yaml, the Kubernetes manifests and the multi-process
supervisor give Prometheus the targets its configurations expect.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from colony.composition import SERVICE_NAMES
from colony.distributed.plan import SCRAPE_TARGETS_FILE, plan, write_scrape_targets
from colony.platform.config import Settings
from test_deployment import (
    NAMESPACES,
    OVERLAYS,
    PROCESSES,
    SCRAPER,
    admitted,
    by_kind,
    container_port,
    label_selects,
    main_container,
    pod_labels,
    rendered,
)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules" / "colony.rules.yml"
RULE_TESTS = PROMETHEUS / "rules" / "colony.tests.yml"
SCRAPE_CONFIGS = ("one-process.yml", "distributed.yml", "compose.yml", "kubernetes.yml")
GRAFANA = DEPLOY / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
JOB = "colony"
TARGET_LABELS = {"job", "instance", "service", "namespace"}
"""The labels Prometheus gives every scraped series in some topology (see the configs)."""

# --------------------------------------------------------------------------- the catalogue
# Every metric a Colony process serves on /metrics (src/colony/platform/observability), by
# the name it is declared with: its type and its labels. prometheus_client exposes a counter
# as <name>_total and a histogram as <name>_bucket (with `le`), _sum and _count.

CATALOGUE: dict[str, tuple[str, set[str]]] = {
    "http_server_request_duration_seconds": (
        "histogram",
        {"service", "http_request_method", "http_route", "http_response_status_code"},
    ),
    "rpc_server_call_duration_seconds": (
        "histogram",
        {"service", "rpc_method", "rpc_caller", "outcome"},
    ),
    "rpc_client_call_duration_seconds": (
        "histogram",
        {"service", "rpc_peer", "rpc_method", "outcome"},
    ),
    "messaging_client_published_messages": ("counter", {"service", "messaging_destination_name"}),
    "messaging_process_duration_seconds": (
        "histogram",
        {"service", "messaging_consumer_group_name", "messaging_destination_name", "outcome"},
    ),
    "colony_dead_letters_recorded": ("counter", {"service", "messaging_destination_name"}),
    "colony_jetstream_redeliveries": ("counter", {"service", "messaging_destination_name"}),
    "colony_breaker_transitions": ("counter", {"service", "dependency", "state"}),
    "colony_saga_step_duration_seconds": (
        "histogram",
        {"service", "saga", "step", "direction", "outcome"},
    ),
    "colony_sagas_finished": ("counter", {"service", "saga", "outcome"}),
    "colony_payment_provider_outcomes": ("counter", {"service", "operation", "outcome"}),
    "colony_event_loop_lag_seconds": ("gauge", {"service"}),
    # Read when Prometheus scrapes.
    "colony_outbox_pending": ("gauge", {"service"}),
    "colony_outbox_oldest_pending_seconds": ("gauge", {"service"}),
    "colony_dead_letters_open": ("gauge", {"service"}),
    "colony_breaker_state": ("gauge", {"service", "dependency", "endpoint", "state"}),
    "colony_dependency_calls": ("counter", {"service", "dependency"}),
    "colony_dependency_failures": ("counter", {"service", "dependency"}),
    "colony_retries": ("counter", {"service", "dependency"}),
    "colony_retries_refused": ("counter", {"service", "dependency"}),
    "colony_bulkhead_in_flight": ("gauge", {"service", "dependency"}),
    "colony_bulkhead_waiting": ("gauge", {"service", "dependency"}),
    "colony_bulkhead_rejected": ("counter", {"service", "dependency"}),
    "colony_sagas": ("gauge", {"service", "saga", "state"}),
    "colony_sagas_overdue": ("gauge", {"service", "saga"}),
    "colony_jetstream_consumer_pending": ("gauge", {"service", "consumer"}),
    # The process collector's: per process, no service label of their own.
    "process_cpu_seconds": ("counter", set()),
    "process_resident_memory_bytes": ("gauge", set()),
}


def exposed() -> dict[str, set[str]]:
    """Every series name /metrics shows, with its labels; and Prometheus's own `up`."""
    names: dict[str, set[str]] = {"up": set()}
    for name, (kind, labels) in CATALOGUE.items():
        if kind == "counter":
            names[f"{name}_total"] = labels
        elif kind == "histogram":
            names[f"{name}_bucket"] = labels | {"le"}
            names[f"{name}_sum"] = labels
            names[f"{name}_count"] = labels
        else:
            names[name] = labels
    return {name: labels | TARGET_LABELS for name, labels in names.items()}


# --------------------------------------------------------------------------- reading PromQL

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*\"\"")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """The metric names a PromQL expression selects, each with the labels its matchers name.
    Strings, ranges (Grafana's ``$__rate_interval`` among them) and grouping clauses are
    removed first; a name followed by ``(`` is a function or an aggregation."""
    text = _STRING.sub('""', expr)
    text = _GROUPING.sub(" ", _RANGE.sub("", text))
    found = []
    for match in _SELECTOR.finditer(text):
        name, matchers = match[1], match[2] or ""
        if name in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        found.append((name, set(_MATCHER.findall(matchers))))
    return found


def test_selectors_reads_names_and_matchers() -> None:
    """The reader the checks below rely on sees every selector, and only selectors."""
    expr = (
        'sum by (service, le) (rate(foo_bucket{service="orders",le=~"0.5|1"}[$__rate_interval]))'
        " / on (service) group_left colony:bar:ratio_rate5m offset 5m > bool 1e3"
        ' or max without (state) (baz{state!~"open|half_open"}) and vector(0)'
        ' unless histogram_quantile(0.99, qux{a="}{"}[5m:1m])'
    )
    assert selectors(expr) == [
        ("foo_bucket", {"service", "le"}),
        ("colony:bar:ratio_rate5m", set()),
        ("baz", {"state"}),
        ("qux", {"a"}),
    ]


# --------------------------------------------------------------------------- the files


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("colony_deploy_generate", DEPLOY / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row's


def dashboard_queries() -> Iterator[tuple[str, str]]:
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                yield f"{name}: {panel['title']}", target["expr"]


def rule_queries() -> Iterator[tuple[str, str]]:
    for rule in rules():
        yield rule.get("alert") or rule["record"], rule["expr"]


# --------------------------------------------------------------------------- promtool


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("COLONY_REQUIRE_SERVICES") == "1":
            pytest.fail("promtool is required (COLONY_REQUIRE_SERVICES=1) but not installed")
        pytest.skip("no promtool (Debian: apt-get install prometheus)")
    return path


def run(command: list[str | Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=120
    )


def test_promtool_checks_the_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", RULES])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = run([promtool, "test", "rules", RULE_TESTS])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config", SCRAPE_CONFIGS)
def test_promtool_checks_each_scrape_config(promtool: str, config: str, tmp_path: Path) -> None:
    """Each topology's configuration, and the rules it loads, as Prometheus would read it
    there: the credentials file it names exists (in a copy, with a token of ours). Debian
    builds Prometheus without Kubernetes discovery: there the Kubernetes configuration is
    checked with its discovery replaced by a static target, the rest (its relabelling) as it
    is."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS, copy)
    token = tmp_path / "token"
    token.write_text("a-token")
    document = load_yaml(copy / config)
    for job in document["scrape_configs"]:
        if "credentials_file" in job.get("authorization", {}):
            job["authorization"]["credentials_file"] = str(token)
    (copy / config).write_text(yaml.safe_dump(document))
    result = run([promtool, "check", "config", copy / config])
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        for job in document["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = [{"targets": ["10.0.0.1:8080"]}]
        (copy / config).write_text(yaml.safe_dump(document))
        result = run([promtool, "check", "config", copy / config])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_parses_every_dashboard_query(promtool: str, tmp_path: Path) -> None:
    """Each panel's query is PromQL Prometheus accepts (checked as a recording rule, with
    Grafana's window variable given a value)."""
    queries = [expr.replace("$__rate_interval", "1m") for _, expr in dashboard_queries()]
    group = {
        "name": "dashboards",
        "rules": [{"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)],
    }
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    result = run([promtool, "check", "rules", path])
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- rules


REQUIRED_ALERTS = {
    "ColonyGatewayErrorBudgetBurnFast": "error-rate SLO burn",
    "ColonyGatewayErrorBudgetBurnSlow": "error-rate SLO burn",
    "ColonyGatewayLatencyBudgetBurnFast": "latency SLO burn",
    "ColonyGatewayLatencyBudgetBurnSlow": "latency SLO burn",
    "ColonyOutboxLagging": "outbox lag",
    "ColonyDeadLettersGrowing": "DLQ growth",
    "ColonyBreakerOpen": "breaker open too long",
    "ColonySagaPastDeadline": "saga stuck past deadline",
    "ColonyServiceDown": "a service down",
    "ColonyInstanceDown": "a process down",
}


def test_every_alert_says_how_bad_and_what() -> None:
    found = alerts()
    assert set(REQUIRED_ALERTS) <= set(found), set(REQUIRED_ALERTS) - set(found)
    for name, rule in found.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name
    assert any(re.search(r"\bup\{[^}]*\} == 0", rule["expr"]) for rule in found.values())


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    tests = load_yaml(RULE_TESTS)
    assert tests["rule_files"] == [RULES.name]
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(alerts()) <= fired, f"no unit test fires {sorted(set(alerts()) - fired)}"
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])}
    assert tested <= set(alerts()), f"tests of alerts that do not exist: {tested - set(alerts())}"


def test_burn_rate_alerts_read_two_windows_each() -> None:
    """Multiwindow, multi-burn-rate: every clause of a burn-rate alert compares a long window
    and a short one, at the same burn rate."""
    windows = {"1h": "5m", "6h": "30m", "1d": "2h", "3d": "6h"}
    for name, rule in alerts().items():
        if "BudgetBurn" not in name:
            continue
        clauses = re.findall(
            r"ratio_rate(\w+) > \(?([\d. *]+)\)?\s*and\s*\S+ratio_rate(\w+) > \(?([\d. *]+)\)?",
            rule["expr"],
        )
        assert len(clauses) == 2, name
        for long, long_burn, short, short_burn in clauses:
            assert windows[long] == short and long_burn == short_burn, name


@pytest.mark.parametrize(
    ("where", "expr"), [*rule_queries(), *dashboard_queries()], ids=lambda value: value[:60]
)
def test_queries_name_only_exported_metrics_and_labels(where: str, expr: str) -> None:
    """Every metric a rule or a dashboard queries is one Colony exports (or a recording rule
    of colony.rules.yml), and every label it matches on is one that metric has."""
    known = exposed()
    names = selectors(expr)
    assert names, f"{where}: no metric in {expr!r}"
    for name, labels in names:
        if name in recorded():
            continue
        assert name in known, f"{where}: {name} is no metric Colony exports"
        assert labels <= known[name], f"{where}: {name} has no label {labels - known[name]}"


# --------------------------------------------------------------------------- scrape configs


def scrape_job(config: str) -> dict[str, Any]:
    document = load_yaml(PROMETHEUS / config)
    assert document["rule_files"] == ["rules/colony.rules.yml"], config
    (job,) = (j for j in document["scrape_configs"] if j["job_name"] == JOB)
    assert isinstance(job, dict)
    return job


def test_one_process_config_scrapes_the_process() -> None:
    settings = Settings()
    (static,) = scrape_job("one-process.yml")["static_configs"]
    assert static["targets"] == [f"127.0.0.1:{settings.port}"]


def test_distributed_config_reads_the_supervisors_targets(tmp_path: Path) -> None:
    """The file the supervisor writes (in the default data directory, from the repository's
    root) is the one the configuration reads; one group per process, replicas included,
    labelled as the rules expect."""
    job = scrape_job("distributed.yml")
    (discovery,) = job["file_sd_configs"]
    (path,) = discovery["files"]
    expected = (ROOT / Settings().data_dir / SCRAPE_TARGETS_FILE).resolve()
    assert (PROMETHEUS / path).resolve() == expected
    processes = plan(SERVICE_NAMES, {"orders": 2, "gateway": 2}, 8080)
    written = write_scrape_targets(processes, tmp_path / SCRAPE_TARGETS_FILE)
    groups = json.loads(written.read_text())
    assert len(groups) == len(processes) == len(SERVICE_NAMES) + 3
    for group, process in zip(groups, processes, strict=True):
        assert group["targets"] == [f"127.0.0.1:{process.port}"]
        assert group["labels"] == {
            "job": JOB,
            "service": process.service,
            "instance": process.instance,
        }
    assert {g["labels"]["instance"] for g in groups} >= {"orders-2", "gateway-1", "gateway-2"}
    assert not list(tmp_path.rglob("*.partial"))


def test_compose_config_scrapes_every_colony_container() -> None:
    compose = load_yaml(ROOT / "compose.yaml")
    job = scrape_job("compose.yml")
    (discovery,) = job["dns_sd_configs"]
    assert sorted(discovery["names"]) == sorted(PROCESSES)
    for name in PROCESSES:
        environment = compose["services"][name]["environment"]
        assert str(discovery["port"]) == environment["COLONY_PORT"], name
    relabel = {r["target_label"]: r["source_labels"] for r in job["relabel_configs"]}
    assert relabel["service"] == ["__meta_dns_name"]


def test_kubernetes_config_follows_the_annotations() -> None:
    job = scrape_job("kubernetes.yml")
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod"
    assert set(NAMESPACES.values()) <= set(discovery["namespaces"]["names"])
    sources = {s for r in job["relabel_configs"] for s in r.get("source_labels", [])}
    for annotation in ("scrape", "port", "path"):
        assert f"__meta_kubernetes_pod_annotation_prometheus_io_{annotation}" in sources


def test_per_process_topologies_let_series_keep_their_service() -> None:
    """A process's series carry their own `service`; where the target has one too, the
    series' wins rather than being renamed exported_service."""
    for config in ("distributed.yml", "compose.yml", "kubernetes.yml"):
        assert scrape_job(config)["honor_labels"] is True, config
    pod_monitor = load_yaml(DEPLOY / "kubernetes" / "monitoring" / "pod-monitor.yaml")
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["honorLabels"] is True


# --------------------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("target", OVERLAYS)
def test_colony_pods_are_annotated_and_admit_the_scraper(target: str) -> None:
    """Every Colony process's pod says where its metrics are, on the port it serves; the
    PodMonitor selects exactly those pods, on that port; the NetworkPolicies admit Prometheus
    there and nowhere else."""
    resources = rendered(target)
    port = int(by_kind(resources, "ConfigMap")["colony-config"]["data"]["COLONY_PORT"])
    workloads = [r for r in resources if r["kind"] in ("Deployment", "StatefulSet")]
    (pod_monitor,) = by_kind(rendered("monitoring"), "PodMonitor").values()
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    for workload in workloads:
        name = workload["metadata"]["name"]
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        monitored = label_selects(pod_monitor["spec"]["selector"], pod_labels(workload))
        if name not in PROCESSES:
            assert "prometheus.io/scrape" not in annotations, f"{name} serves no /metrics"
            assert not monitored, name
            for declared in main_container(workload)["ports"]:
                assert SCRAPER not in (
                    admitted(resources, workload, declared["containerPort"]) or set()
                )
            continue
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }, name
        assert monitored, name
        assert endpoint["path"] == "/metrics"
        assert container_port(main_container(workload), endpoint["port"]) == port, name
        assert SCRAPER in (admitted(resources, workload, port) or set()), name
        assert SCRAPER not in (admitted(resources, workload, port + 1) or set()), name


def test_operator_resources_match_the_rules() -> None:
    """The PrometheusRule carries colony.rules.yml's groups; the PodMonitor labels its
    targets as the rules expect."""
    resources = rendered("monitoring")
    assert {r["kind"] for r in resources} == {"PodMonitor", "PrometheusRule"}
    (rule,) = by_kind(resources, "PrometheusRule").values()
    assert rule["spec"]["groups"] == load_yaml(RULES)["groups"]
    (pod_monitor,) = by_kind(resources, "PodMonitor").values()
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
    assert relabel["job"]["replacement"] == JOB
    assert relabel["service"]["sourceLabels"] == [
        "__meta_kubernetes_pod_label_app_kubernetes_io_name"
    ]


# --------------------------------------------------------------------------- Grafana


def test_generated_files_are_committed() -> None:
    """The dashboards and the PrometheusRule are what deploy/generate.py makes of their
    sources; run it after changing either."""
    files = load_generator().generated()
    for path, content in files.items():
        assert path.exists(), f"{path.relative_to(ROOT)}: run .venv/bin/python deploy/generate.py"
        assert path.read_text() == content, (
            f"{path.relative_to(ROOT)} differs: run .venv/bin/python deploy/generate.py"
        )
    extra = set(DASHBOARDS.glob("*.json")) - set(files)
    assert not extra, f"dashboards no generator makes: {sorted(p.name for p in extra)}"


def test_dashboards_for_the_overview_every_process_and_checkout() -> None:
    titles = {d["uid"]: d["title"] for d in dashboards().values()}
    assert len(titles) == len(dashboards()), "dashboard uids repeat"
    expected = {"colony-overview", "colony-checkout", *(f"colony-{p}" for p in PROCESSES)}
    assert set(titles) == expected


def test_dashboards_panels_have_unique_ids_and_the_provisioned_datasource() -> None:
    (datasource,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    expected = {"type": datasource["type"], "uid": datasource["uid"]}
    for name, dashboard in dashboards().items():
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == expected, f"{name}: {panel['title']}"
            assert panel["targets"], f"{name}: {panel['title']} queries nothing"
            for target in panel["targets"]:
                assert target["datasource"] == expected, f"{name}: {panel['title']}"
            position = panel["gridPos"]
            assert position["x"] + position["w"] <= 24, f"{name}: {panel['title']}"


# --------------------------------------------------------------------------- compose


def test_compose_runs_prometheus_and_grafana_on_request() -> None:
    """Both in the `observability` profile (a plain `up` is unchanged), their configuration
    mounted read-only from the repository where their command and provisioning look."""
    compose = load_yaml(ROOT / "compose.yaml")
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        service = services[name]
        assert service["profiles"] == ["observability"], name
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), name
        for volume in service["volumes"]:
            source, _, mode = (*volume.split(":"), "")[:3]
            if source.startswith("./"):
                assert mode == "ro", f"{name}: {volume}"
                assert (ROOT / source).exists(), f"{name}: {volume}"
    mounts: dict[str, Path] = {
        volume.split(":")[1]: ROOT / volume.split(":")[0]
        for name in ("prometheus", "grafana")
        for volume in services[name]["volumes"]
        if volume.startswith("./")
    }

    def on_host(path: str) -> Path:
        for inside, outside in mounts.items():
            if path.startswith(inside + "/"):
                return outside / path.removeprefix(inside + "/")
        raise AssertionError(f"{path} is in no mounted directory")

    prometheus = services["prometheus"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in prometheus["command"])
    assert on_host(flags["config.file"]) == PROMETHEUS / "compose.yml"
    grafana = services["grafana"]
    assert on_host("/etc/grafana/provisioning/datasources") == GRAFANA / "provisioning/datasources"
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "colony.yml")["providers"]
    assert on_host(provider["options"]["path"] + "/overview.json") == DASHBOARDS / "overview.json"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert on_host(home).is_file()
    assert grafana["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in prometheus["ports"]
    assert grafana["depends_on"]["prometheus"] == {"condition": "service_healthy"}


def test_compose_prometheus_presents_the_gateways_metrics_token(tmp_path: Path) -> None:
    """The gateway's port is public, so its /metrics answers another container only with
    the token: one variable sets it for both, and Prometheus's entrypoint writes it where
    its configuration reads it, then runs Prometheus with the command's flags."""
    services = load_yaml(ROOT / "compose.yaml")["services"]
    token = services["gateway"]["environment"]["COLONY_METRICS_TOKEN"]
    assert token.startswith("${COLONY_METRICS_TOKEN:-"), token
    assert services["prometheus"]["environment"]["COLONY_METRICS_TOKEN"] == token
    path = scrape_job("compose.yml")["authorization"]["credentials_file"]
    shell, flag, script, zero = services["prometheus"]["entrypoint"]
    fake = tmp_path / "prometheus"
    fake.write_text('#!/bin/sh\necho "$*"\n')
    fake.chmod(0o755)
    written = tmp_path / "metrics-token"
    script = script.replace("$$", "$").replace(path, str(written))
    script = script.replace("/bin/prometheus", str(fake))
    result = subprocess.run(
        [shell, flag, script, zero, *services["prometheus"]["command"]],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLONY_METRICS_TOKEN": "s3cret"},
        timeout=30,
        check=True,
    )
    assert written.read_text() == "s3cret"
    assert result.stdout.split() == services["prometheus"]["command"]


@pytest.mark.parametrize("target", OVERLAYS)
def test_kubernetes_scrapers_present_the_gateways_metrics_token(target: str) -> None:
    """The gateway reads its metrics token from the Secret the PodMonitor presents, and
    that plain Prometheus's configuration expects mounted; no other process needs it."""
    deployments = by_kind(rendered(target), "Deployment")
    references = {
        name: variable["valueFrom"]["secretKeyRef"]
        for name, deployment in deployments.items()
        for variable in main_container(deployment).get("env", [])
        if variable["name"] == "COLONY_METRICS_TOKEN"
    }
    assert set(references) == {"gateway"}
    reference = references["gateway"]
    assert reference["optional"] is True  # the gateway runs without; only local scrapes then
    (pod_monitor,) = by_kind(rendered("monitoring"), "PodMonitor").values()
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    credentials = endpoint["authorization"]["credentials"]
    assert (credentials["name"], credentials["key"]) == (reference["name"], reference["key"])
    path = scrape_job("kubernetes.yml")["authorization"]["credentials_file"]
    assert path == f"/etc/prometheus/secrets/{reference['name']}/{reference['key']}"


def test_compose_file_is_valid_for_docker_compose() -> None:
    """`docker compose config` with the profile on, where Docker Compose is installed."""
    docker = shutil.which("docker")
    if docker is None or run([docker, "compose", "version"]).returncode != 0:
        pytest.skip("Docker Compose is not installed")
    result = run(
        [
            docker,
            "compose",
            "-f",
            ROOT / "compose.yaml",
            "--profile",
            "observability",
            "config",
            "-q",
        ]
    )
    assert result.returncode == 0, result.stderr
