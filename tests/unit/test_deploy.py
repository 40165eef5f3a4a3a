"""The deployment files under deploy/ checked offline by real validators (no container engine runs here).

* ``deploy/docker-compose.yml``: against the Compose Specification's JSON schema (vendored by the pinned PyPI
  package check-jsonschema), and resolved like ``docker compose config`` does: by the CLI plugin where it is
  installed, else by compose-go (the loader docker compose is built on; tests/compose_config/).
* ``deploy/k8s/*.yaml``: every built-in kind against Kubernetes' own OpenAPI-derived schemas (the pinned
  PyPI package kubernetes-validate, strict: unknown fields fail); the custom resources (Strimzi's Kafka,
  KafkaNodePool, KafkaTopic, KafkaUser; the Prometheus Operator's ServiceMonitor) against their CRDs'
  schemas (pinned npm packages, run by node: tests/crd_validate/), plus cross-checks between files.
* ``deploy/Dockerfile``: parsed by BuildKit's own parser (PyPI ``dockerfile``) and checked for what the
  deployment relies on (multi-stage, non-root, health check, every source folder copied).
* ``deploy/README.md``: its configuration reference equals the one generated from Settings.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import dockerfile
import jsonschema
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError
from kubernetes_validate.utils import validate as k8s_validate

from flitfeed.settings import Settings
from flitfeed.streams.topics import (TOPIC_DEAD_LETTERS, TOPIC_FEED_REQUESTS, TOPIC_FEEDS, TOPIC_FLIT_VECTORS,
                                     TOPIC_FLITS, TOPIC_INTERACTIONS, TOPIC_PARKED, TOPIC_USER_STATES)
from flitfeed.settings_reference import BEGIN, END, reference_rows, render

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
#: The Kubernetes version the manifests are written for (kubernetes-validate 1.37.0 ships its schemas).
K8S_VERSION = "1.37.0"
#: Custom resources: kubernetes-validate has no schema for them; they are checked against their own CRD
#: schemas (Strimzi 0.49.0's and the Prometheus Operator's CRDs, compiled by the pinned npm packages
#: @kubernetes-models/*) by tests/crd_validate/validate.mjs under node.
CUSTOM_KINDS = {
    ("kafka.strimzi.io/v1beta2", "Kafka"), ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"), ("kafka.strimzi.io/v1beta2", "KafkaUser"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
CRD_VALIDATE = REPO / "tests" / "crd_validate"
#: Settings agreed in CONTRACTS.md and implemented by the security work (issue 6); the manifests use them.
CONTRACT_SETTINGS = {
    "FLITFEED_KAFKA_SECURITY_PROTOCOL", "FLITFEED_KAFKA_SASL_MECHANISM", "FLITFEED_KAFKA_SASL_USERNAME",
    "FLITFEED_KAFKA_SASL_PASSWORD", "FLITFEED_KAFKA_SASL_PASSWORD_FILE", "FLITFEED_KAFKA_SSL_CAFILE",
    "FLITFEED_KAFKA_SSL_CERTFILE", "FLITFEED_KAFKA_SSL_KEYFILE", "FLITFEED_QDRANT_API_KEY_FILE",
}
KNOWN_SETTINGS = {r.env for r in reference_rows()} | CONTRACT_SETTINGS
ALL_TOPICS = {TOPIC_FLITS, TOPIC_INTERACTIONS, TOPIC_FEED_REQUESTS, TOPIC_FEEDS, TOPIC_DEAD_LETTERS,
              TOPIC_FLIT_VECTORS, TOPIC_USER_STATES, TOPIC_PARKED}


# --- docker compose ------------------------------------------------------------------------------------------
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def compose_schema() -> dict:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def compose_errors(doc: dict) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_matches_the_compose_specification_schema() -> None:
    assert compose_schema()["title"] == "Compose Specification"
    assert compose_errors(compose()) == []


def test_compose_schema_check_rejects_a_broken_file() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["worker"]["healthcheck"]["interval"] = ["15s"]
    broken["services"]["ranker"]["depends_on"] = 5
    assert len(compose_errors(broken)) >= 2


COMPOSE_CONFIG_SRC = REPO / "tests" / "compose_config"


def _has_compose_plugin() -> bool:
    return bool(shutil.which("docker")) and subprocess.run(["docker", "compose", "version"],
                                                           capture_output=True).returncode == 0


def compose_config(path: Path) -> subprocess.CompletedProcess:
    """``docker compose config`` where the CLI plugin exists; otherwise the same loader (compose-go, pinned in
    tests/compose_config/go.mod) built once with the Go toolchain into var/tools/."""
    if _has_compose_plugin():
        return subprocess.run(["docker", "compose", "-f", str(path), "config"], capture_output=True, text=True)
    if shutil.which("go") is None:
        pytest.skip("neither the docker compose plugin nor a Go toolchain to build compose-go is installed")
    binary = REPO / "var" / "tools" / "compose-config"
    sources = [COMPOSE_CONFIG_SRC / n for n in ("main.go", "go.mod", "go.sum")]
    if not binary.exists() or binary.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        build = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=COMPOSE_CONFIG_SRC, capture_output=True,
                               text=True, timeout=600)
        assert build.returncode == 0, build.stderr
    return subprocess.run([str(binary), str(path)], capture_output=True, text=True, timeout=60)


def test_compose_config_resolves_the_file_like_docker_compose() -> None:
    result = compose_config(DEPLOY / "docker-compose.yml")
    assert result.returncode == 0, result.stderr
    project = yaml.safe_load(result.stdout)
    assert {"kafka", "qdrant", "topics", "worker", "ranker", "prometheus", "grafana"} <= set(project["services"])
    for role in ("worker", "ranker"):
        svc = project["services"][role]
        assert svc["deploy"]["replicas"] == 1  # ${FLITFEED_*_REPLICAS:-1} interpolated to a number
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert svc["build"]["context"] == str(REPO)


def test_compose_config_rejects_a_semantic_error(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["ranker"]["depends_on"] = {"zookeeper": {"condition": "service_started"}}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert compose_errors(broken) == [], "the JSON schema alone cannot see this"
    result = compose_config(path)
    assert result.returncode != 0 and "zookeeper" in result.stderr


def test_compose_stack_has_every_part_wired() -> None:
    doc = compose()
    services = doc["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    kafka_version = (DEPLOY / "kafka" / "VERSION").read_text().strip()
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version}", "same Kafka as the local broker"
    for name in ("kafka", "qdrant", "prometheus", "grafana"):
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} image must be pinned"
    prometheus_mounts = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus/prometheus.yml:" in prometheus_mounts and "./prometheus/rules:" in prometheus_mounts
    grafana_mounts = " ".join(services["grafana"]["volumes"])
    assert "./grafana/provisioning:" in grafana_mounts and "./grafana/dashboards:" in grafana_mounts
    for role, port, probe in (("worker", "9101", "livez"), ("ranker", "9102", "livez")):
        svc = services[role]
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile" and (DEPLOY.parent / svc["build"]["context"]
                                                                       .replace("..", ".")).exists()
        assert svc["command"] == [role]
        assert "replicas" in svc["deploy"], f"{role} must be scalable"
        assert svc["healthcheck"]["test"][-1] == probe
        env = svc["environment"]
        assert env[f"FLITFEED_{role.upper()}_METRICS_PORT"] == port and env["FLITFEED_METRICS_HOST"] == "0.0.0.0"
        assert env["FLITFEED_QDRANT_URL"].startswith("http://qdrant:")
        assert set(env) <= KNOWN_SETTINGS, set(env) - KNOWN_SETTINGS
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"


# --- Kubernetes ----------------------------------------------------------------------------------------------
def manifests() -> list[tuple[str, dict]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [(name, d) for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def by_kind(kind: str) -> list[dict]:
    return [d for _, d in manifests() if d["kind"] == kind]


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "qdrant-values.yaml"}
    assert listed == on_disk


def test_builtin_manifests_match_the_kubernetes_schemas_strictly() -> None:
    validated, skipped = [], []
    for name, doc in manifests():
        key = (doc["apiVersion"], doc["kind"])
        if key in CUSTOM_KINDS:
            skipped.append(key)
            continue
        k8s_validate(doc, K8S_VERSION, strict=True)  # raises ValidationError with the path of the bad field
        validated.append(key)
    assert {k for _, k in validated} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap",
                                         "Secret", "Namespace", "PodDisruptionBudget"}
    assert set(skipped) == CUSTOM_KINDS, "only custom resources are left to their CRD schemas"


def test_kubernetes_schema_check_rejects_a_typo_and_a_wrong_type() -> None:
    deployment = copy.deepcopy(by_kind("Deployment")[0])
    deployment["spec"]["replicaz"] = 2
    with pytest.raises(jsonschema.ValidationError, match="replicaz"):
        k8s_validate(deployment, K8S_VERSION, strict=True)
    deployment = copy.deepcopy(by_kind("Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = "often"
    with pytest.raises(jsonschema.ValidationError):
        k8s_validate(deployment, K8S_VERSION, strict=True)
    with pytest.raises(SchemaNotFoundError):  # why custom resources are validated by their CRDs instead
        k8s_validate(by_kind("KafkaTopic")[0], K8S_VERSION, strict=True)


def crd_validate(files: list[Path]) -> tuple[int, list[dict]]:
    """Run tests/crd_validate/validate.mjs (installing its pinned npm packages on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: custom resources not validated against their CRD schemas")
    if not (CRD_VALIDATE / "node_modules").exists():
        install = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CRD_VALIDATE, capture_output=True,
                                 text=True, timeout=300)
        assert install.returncode == 0, install.stderr
    run = subprocess.run(["node", "validate.mjs", *map(str, files)], cwd=CRD_VALIDATE, capture_output=True,
                         text=True, timeout=120)
    return run.returncode, [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def test_custom_resources_match_their_crd_schemas() -> None:
    rc, results = crd_validate(sorted(K8S.glob("*.yaml")))
    assert [r for r in results if not r["ok"]] == [] and rc == 0
    checked = {(r["apiVersion"], r["kind"]) for r in results}
    assert checked == CUSTOM_KINDS
    assert len(results) == sum(1 for _, d in manifests() if (d["apiVersion"], d["kind"]) in CUSTOM_KINDS)


def test_crd_schema_check_rejects_wrong_custom_resources(tmp_path: Path) -> None:
    topic = copy.deepcopy(by_kind("KafkaTopic")[0])
    topic["spec"]["partitions"] = "twelve"
    monitor = copy.deepcopy(by_kind("ServiceMonitor")[0])
    del monitor["spec"]["selector"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([topic, monitor]))
    rc, results = crd_validate([bad])
    assert rc == 1 and [r["ok"] for r in results] == [False, False]
    assert "partitions" in results[0]["error"] and "selector" in results[1]["error"]


def config_map() -> dict[str, str]:
    (cm,) = by_kind("ConfigMap")
    return cm["data"]


def test_services_are_probed_resourced_and_scraped() -> None:
    settings = config_map()
    assert set(settings) <= KNOWN_SETTINGS, set(settings) - KNOWN_SETTINGS
    for role in ("worker", "ranker"):
        (deployment,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == f"flitfeed-{role}"]
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        port = int(settings[f"FLITFEED_{role.upper()}_METRICS_PORT"])
        assert container["ports"][0]["containerPort"] == port and container["args"] == [role]
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert any(e["name"] == "FLITFEED_INSTANCE_ID" for e in container["env"])
        mounted = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert mounted["credentials"]["secret"]["secretName"] == "flitfeed-credentials"
    (secret,) = by_kind("Secret")
    for key_file in (settings["FLITFEED_KAFKA_SASL_PASSWORD_FILE"], settings["FLITFEED_QDRANT_API_KEY_FILE"]):
        assert Path(key_file).name in secret["stringData"], "credentials files come from the Secret"
    (monitor,) = by_kind("ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_topics_and_autoscaling_agree_with_the_partition_count() -> None:
    partitions = int(config_map()["FLITFEED_PARTITIONS"])
    topics = {t["metadata"]["name"]: t for t in by_kind("KafkaTopic")}
    assert set(topics) == ALL_TOPICS
    (kafka,) = by_kind("Kafka")
    for topic in topics.values():
        assert topic["spec"]["partitions"] == partitions, "user-keyed topics must be co-partitioned"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    for name in (TOPIC_FLIT_VECTORS, TOPIC_USER_STATES):
        assert topics[name]["spec"]["config"]["cleanup.policy"] == "compact"
    for hpa in by_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["maxReplicas"] <= partitions, "replicas beyond the partition count would idle"
    assert config_map()["FLITFEED_BOOTSTRAP_SERVERS"].startswith(f"{kafka['metadata']['name']}-kafka-bootstrap.")


def test_qdrant_chart_values_run_a_replicated_cluster() -> None:
    values = yaml.safe_load((K8S / "qdrant-values.yaml").read_text())
    assert values["config"]["cluster"]["enabled"] is True and values["replicaCount"] >= 3
    assert int(config_map()["FLITFEED_QDRANT_REPLICATION_FACTOR"]) >= 2
    assert values["apiKey"]["valueFrom"]["secretKeyRef"]["name"] == by_kind("Secret")[0]["metadata"]["name"]


def test_compose_k8s_and_the_tests_run_one_qdrant_version() -> None:
    """The image compose runs, the Helm chart's tag and the server binary the tests start are one release."""
    import subprocess

    from tests.qdrant_server import QDRANT_VERSION, qdrant_binary

    assert compose()["services"]["qdrant"]["image"] == f"qdrant/qdrant:v{QDRANT_VERSION}"
    assert yaml.safe_load((K8S / "qdrant-values.yaml").read_text())["image"]["tag"] == f"v{QDRANT_VERSION}"
    binary = qdrant_binary()
    if binary is not None:  # CI has it (../shared/bin/qdrant); it says its own version
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout
        assert out.split() == ["qdrant", QDRANT_VERSION], out


# --- Dockerfile ----------------------------------------------------------------------------------------------
_DURATION = re.compile(r"^\d+(ms|s|m|h)$")


def lint_dockerfile(commands: list) -> list[str]:
    """What BuildKit would reject at build time beyond syntax, plus hadolint's exec-form rule (DL3025)."""
    problems = []
    args = {c.value[0].split("=")[0] for c in commands if c.cmd == "ARG"}
    stages: set[str] = set()
    for c in commands:
        where = f"line {c.start_line}: {c.original}"
        if c.cmd.lower() not in dockerfile.all_cmds():
            problems.append(f"unknown instruction: {where}")
        elif not c.value and c.cmd != "HEALTHCHECK":
            problems.append(f"instruction without arguments: {where}")
        if c.cmd == "FROM":
            image = c.value[0]
            if image.startswith("${") and image[2:-1] not in args:
                problems.append(f"FROM uses an undeclared ARG: {where}")
            if len(c.value) == 3 and c.value[1].upper() == "AS":
                stages.add(c.value[2])
        for flag in c.flags:
            if flag.startswith("--from=") and flag.split("=", 1)[1] not in stages:
                problems.append(f"COPY from an undefined stage: {where}")
            if c.cmd == "HEALTHCHECK" and flag.split("=")[0] in ("--interval", "--timeout", "--start-period") \
                    and not _DURATION.match(flag.split("=", 1)[1]):
                problems.append(f"bad duration: {where}")
        if c.cmd in ("ENTRYPOINT", "CMD") and not c.json:
            problems.append(f"use the exec (JSON) form so signals reach the service: {where}")
        if c.cmd == "HEALTHCHECK" and not (c.value and c.value[0] == "CMD" and c.original.split("CMD", 1)[1]
                                           .strip().startswith("[")):
            problems.append(f"HEALTHCHECK needs CMD in exec form: {where}")
    return problems


def test_dockerfile_is_multi_stage_non_root_with_health_check_and_all_sources() -> None:
    commands = dockerfile.parse_file(str(DEPLOY / "Dockerfile"))  # BuildKit's parser: raises on syntax errors
    assert lint_dockerfile(commands) == []
    stages = [c for c in commands if c.cmd == "FROM"]
    assert len(stages) >= 2
    final = commands[commands.index(stages[-1]):]
    users = [c.value[0] for c in final if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (health,) = [c for c in final if c.cmd == "HEALTHCHECK"]
    assert "flitfeed.healthcheck" in health.original
    assert any(c.cmd == "COPY" and "--from=build" in c.flags for c in final)
    copied = {c.value[0].rstrip("/") for c in commands if c.cmd == "COPY" and not c.flags}
    package_dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    missing = {d for d in package_dirs.values() if not any(d == c or d.startswith(c + "/") for c in copied)}
    assert not missing, f"not copied into the image: {missing}"
    # make_encoder(EncoderConfig()) = the encoder the services build, incl. the default backend's ONNX export.
    assert any("make_encoder" in c.original for c in commands if c.cmd == "RUN"), \
        "the model must be loaded (baked) at build time"


@pytest.mark.parametrize("text", [
    "FROM python:3.11-slim\nRUN <<EOF\necho\n",                      # unterminated heredoc (parser)
    "FROM python:3.11-slim\nFOO bar\n",                              # unknown instruction
    "FROM python:3.11-slim\nCOPY\n",                                 # no arguments
    "FROM python:3.11-slim\nCOPY --from=builder /a /b\n",            # undefined stage
    "FROM python:3.11-slim\nHEALTHCHECK --interval=often CMD [\"true\"]\n",
    "FROM python:3.11-slim\nCMD flitfeed worker\n",                  # shell form: SIGTERM never reaches it
])
def test_dockerfile_checks_reject_broken_files(text: str) -> None:
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError:
        return
    assert lint_dockerfile(list(commands)) != []


# --- the operations guide ------------------------------------------------------------------------------------
def test_operations_guide_documents_every_setting_as_generated() -> None:
    guide = (DEPLOY / "README.md").read_text()
    start, end = guide.index(BEGIN), guide.index(END) + len(END)
    assert guide[start:end] == render(), (
        "deploy/README.md's settings table is stale: run `python -m flitfeed.settings_reference --write "
        "deploy/README.md`")
    for row in reference_rows():
        assert row.doc, f"{row.env} has no description (add a #: comment above it in flitfeed/settings.py)"
    assert {r.env.removeprefix("FLITFEED_").lower() for r in reference_rows()} == set(Settings.flat_fields())
