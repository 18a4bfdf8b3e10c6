"""Offline validation of docker/ and deploy/: the images, compose stack, Kubernetes manifests, alerts and
dashboard must agree with each other and with the code (settings, routes, metric names).

* Core Kubernetes objects are validated against the real Kubernetes OpenAPI-derived JSON schemas shipped
  inside the `kubernetes-validate` wheel (strict: unknown fields fail), for the oldest and newest
  Kubernetes versions we support.
* CRDs (ServiceMonitor, PrometheusRule) get structural checks; rule groups go through `promtool check
  rules` and a `promtool test rules` unit test (skipped when promtool is not installed).
* Cross-references: every metric name in alerts/dashboard is exported by service/metrics.py or Triton;
  selectors match pod labels; probes/ports/paths exist; every AESRM_* env var is a Settings field;
  kustomizations list every file; compose/Dockerfile sources exist.
No network, no cluster, no Docker engine; runs in a few seconds.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import textwrap
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "k8s" / "base"
MONITORING = DEPLOY / "k8s" / "monitoring"
DASHBOARD = DEPLOY / "grafana" / "aesrm-dashboard.json"
PROMRULE = MONITORING / "prometheusrule.yaml"

# Oldest and newest Kubernetes minors the manifests must be valid for.
K8S_VERSIONS = ("1.29.0", "1.33.0")
DATASOURCE_UID = "prometheus"

# Triton's Prometheus metrics used by deploy/ (https://docs.nvidia.com/deeplearning/triton-inference-server/
# user-guide/docs/user_guide/metrics.html). Triton isn't importable here, so this is the contract list.
TRITON_METRICS = {
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us", "nv_gpu_utilization", "nv_gpu_memory_total_bytes",
    "nv_gpu_memory_used_bytes", "nv_gpu_power_usage", "nv_cpu_utilization",
}
# prometheus_client's ProcessCollector/PlatformCollector, plus Prometheus' synthetic per-target series.
PROCESS_METRICS = {
    "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_cpu_seconds_total",
    "process_open_fds", "process_max_fds", "process_start_time_seconds", "python_info",
}
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Used when service/metrics.py is missing or unparsable (keeps this file usable on partial checkouts).
FALLBACK_GATEWAY_METRICS = {
    ("aesrm_request_duration_seconds", "histogram"), ("aesrm_stage_duration_seconds", "histogram"),
    ("aesrm_batch_size", "histogram"), ("aesrm_cache_requests_total", "counter"),
    ("aesrm_in_flight_requests", "gauge"), ("aesrm_errors_total", "counter"), ("aesrm_queue_depth", "gauge"),
    ("aesrm_backend_ready", "gauge"), ("aesrm_explain_queue_depth", "gauge"),
    ("aesrm_explain_jobs_total", "counter"), ("aesrm_explain_job_duration_seconds", "histogram"),
}


# ----------------------------------------------------------------------------------------------------
# helpers


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kustomize_resources(kdir: Path) -> list[Path]:
    k = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    return [kdir / r for r in k.get("resources", [])]


def manifest_files() -> list[Path]:
    return [p for p in kustomize_resources(BASE) + kustomize_resources(MONITORING) if p.is_file()]


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    objs = [d for p in manifest_files() for d in load_yaml_docs(p)]
    assert objs, "no Kubernetes objects found"
    return objs


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def get(objs: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_templates(objs: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["spec"]["template"] for o in objs
            if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")}


def gateway_metric_families() -> set[tuple[str, str]]:
    """(name, type) from service/metrics.py, read as text so deploy tests don't depend on its imports."""
    path = ROOT / "service" / "metrics.py"
    if not path.exists():
        return FALLBACK_GATEWAY_METRICS
    found = {(name, kind.lower()) for kind, name in
             re.findall(r"\b(Histogram|Counter|Gauge|Summary)\(\s*[\"']([a-zA-Z_:][\w:]*)[\"']", path.read_text())}
    return found or FALLBACK_GATEWAY_METRICS


def exported_series_names() -> set[str]:
    """Every series name a scrape can return: histogram/summary/counter suffixes expanded."""
    names: set[str] = set()
    for name, kind in gateway_metric_families():
        if kind in ("histogram", "summary"):
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
        elif kind == "counter":
            base = name.removesuffix("_total")
            names |= {f"{base}_total", f"{base}_created"}
        else:
            names.add(name)
    return names | TRITON_METRICS | PROCESS_METRICS | SYNTHETIC


_PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                    "and", "or", "unless", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (a tokenizer, not a full parser: strips strings,
    label matchers, durations and grouping clauses, then keeps identifiers that are not function calls)."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)                               # string literals
    e = re.sub(r"\{[^{}]*\}", "", e)                                           # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                                           # range / subquery
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\w+", " ", e)                                               # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(\s*\()?", e):
        ident, call = m.group(1), m.group(2)
        if call or ident.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(ident)
    return names


def prometheus_rule_groups() -> list[dict]:
    (rule,) = load_yaml_docs(PROMRULE)
    return rule["spec"]["groups"]


def recorded_names() -> set[str]:
    return {r["record"] for g in prometheus_rule_groups() for r in g["rules"] if "record" in r}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels(d: dict) -> list[dict]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows nest their panels
    return out


def settings_env_names() -> set[str]:
    from service.config import Settings

    return {f"AESRM_{name.upper()}" for name in Settings.model_fields}


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, args) with comments dropped, then line continuations joined (Docker removes comment
    lines before joining, so a comment inside a continued ENV/RUN is legal)."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, args = line.partition(" ")
            out.append((instr.upper(), args.strip()))
    return out


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


# ----------------------------------------------------------------------------------------------------
# Kubernetes: schemas and kustomize


def test_every_yaml_file_parses():
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml"), *DOCKER.rglob("*.yaml"), *DOCKER.rglob("*.yml")])
    assert len(files) >= 10
    for f in files:
        docs = load_yaml_docs(f)
        assert docs, f"{f} is empty"
        assert all(isinstance(d, dict) for d in docs), f"{f}: every document must be a mapping"


@pytest.mark.parametrize("kdir", [BASE, MONITORING], ids=["base", "monitoring"])
def test_kustomization_lists_every_file(kdir):
    listed = {p.resolve() for p in kustomize_resources(kdir)}
    on_disk = {p.resolve() for p in kdir.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == on_disk, f"not listed: {on_disk - listed}; missing on disk: {listed - on_disk}"


def test_top_level_kustomization_references_exist():
    k = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    for r in k["resources"]:
        assert (DEPLOY / r / "kustomization.yaml").is_file(), r
    files = [f for g in k["configMapGenerator"] for f in g["files"]]
    assert [DEPLOY / f for f in files] == [DASHBOARD]


def test_core_objects_match_kubernetes_schemas(objects):
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    core = [o for o in objects if not o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {o["kind"] for o in core} >= {"Namespace", "ConfigMap", "Deployment", "Service",
                                         "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for version in K8S_VERSIONS:
        for o in core:
            try:
                kv.validate(o, version, strict=True)
            except kv.ValidationError as e:  # re-raise with the object named
                pytest.fail(f"{o['kind']}/{o['metadata']['name']} invalid for Kubernetes {version}: {e.message}")


def test_schema_validation_rejects_a_typo():
    """Guards the validator itself: a misspelt field must fail (strict mode), or the test above is hollow."""
    kv = pytest.importorskip("kubernetes_validate")
    dep = yaml.safe_load((BASE / "gateway-deployment.yaml").read_text())
    dep["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, K8S_VERSIONS[0], strict=True)


@pytest.fixture(scope="module")
def kustomize_build() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed (kustomize build check)")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_kustomize_build_full_stack(kustomize_build):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in kustomize_build}
    assert ("ConfigMap", "aesrm-grafana-dashboard") in kinds
    assert ("PrometheusRule", "aesrm") in kinds
    for o in kustomize_build:
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == "aesrm", o["metadata"]["name"]
    cm = get(kustomize_build, "ConfigMap", "aesrm-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["aesrm-dashboard.json"]) == dashboard()
    hpa = get(kustomize_build, "HorizontalPodAutoscaler", "aesrm-gateway")
    pods_metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods_metrics == ["aesrm_in_flight_requests"]
    kv = pytest.importorskip("kubernetes_validate")
    for o in kustomize_build:
        if not o["apiVersion"].startswith("monitoring.coreos.com/"):
            kv.validate(o, K8S_VERSIONS[-1], strict=True)


# ----------------------------------------------------------------------------------------------------
# Kubernetes: cross-references


def test_workload_selectors_match_their_pod_templates(objects):
    for name, tmpl in pod_templates(objects).items():
        dep = next(o for o in objects if o["metadata"]["name"] == name and "template" in o.get("spec", {}))
        assert matches(dep["spec"]["selector"]["matchLabels"], tmpl["metadata"]["labels"]), name


def test_services_select_exactly_one_workload_and_named_ports_exist(objects):
    templates = pod_templates(objects)
    for svc in by_kind(objects, "Service"):
        targets = [t for t in templates.values() if matches(svc["spec"]["selector"], t["metadata"]["labels"])]
        assert len(targets) == 1, f"Service {svc['metadata']['name']} selects {len(targets)} workloads"
        container_ports = {p.get("name"): p["containerPort"]
                           for c in targets[0]["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            tp = port["targetPort"]
            assert tp in container_ports or tp in container_ports.values(), (svc["metadata"]["name"], tp)


def test_probes_point_at_real_ports_and_paths(objects):
    from service.api import routes_health

    gateway_paths = {r.path for r in routes_health.router.routes}
    triton_paths = {"/v2/health/ready", "/v2/health/live"}  # KServe v2 protocol
    tmpl = pod_templates(objects)
    expected = {"aesrm-gateway": gateway_paths, "aesrm-triton": triton_paths}
    for name, paths in expected.items():
        (c,) = tmpl[name]["spec"]["containers"]
        port_names = {p["name"] for p in c["ports"]}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c[kind]["httpGet"]
            assert probe["port"] in port_names, (name, kind)
            assert probe["path"] in paths, (name, kind, probe["path"])
    gw = tmpl["aesrm-gateway"]["spec"]["containers"][0]
    tr = tmpl["aesrm-triton"]["spec"]["containers"][0]
    # gateway readiness = "this gateway can take traffic" (tests/test_gateway_health.py); Triton: "model loaded"
    assert gw["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert gw["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert tr["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert tr["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    port = {p["name"]: p["containerPort"] for p in gw["ports"]}["http"]
    cm = get(objects, "ConfigMap", "aesrm-gateway")
    assert int(cm["data"]["AESRM_PORT"]) == port


def test_gateway_configuration_is_real_settings(objects):
    known = settings_env_names()
    cm = get(objects, "ConfigMap", "aesrm-gateway")
    aesrm_keys = {k for k in cm["data"] if k.startswith("AESRM_")}
    assert aesrm_keys - known == set(), f"unknown settings: {aesrm_keys - known}"
    (c,) = pod_templates(objects)["aesrm-gateway"]["spec"]["containers"]
    assert [e["configMapRef"]["name"] for e in c["envFrom"]] == ["aesrm-gateway"]
    env = {e["name"]: e for e in c["env"]}
    assert set(env) <= known
    key_ref = env["AESRM_API_KEY_HASHES"]["valueFrom"]["secretKeyRef"]
    assert not key_ref.get("optional", False), "auth must fail closed when the Secret is missing"
    assert key_ref["name"] in (DEPLOY / "README.md").read_text(), "README must say how to create the Secret"
    # service DNS names in the config resolve to Services in the manifests
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in by_kind(objects, "Service")}
    host, port = cm["data"]["AESRM_TRITON_URL"].split(":")
    assert int(port) in services[host]
    m = re.fullmatch(r"redis://([\w.-]+):(\d+)/\d+", cm["data"]["AESRM_REDIS_URL"])
    assert m and int(m.group(2)) in services[m.group(1)]
    assert cm["data"]["AESRM_TRITON_MODEL"] == "aesrm_proxy"


def test_pods_run_non_root_and_locked_down(objects):
    for name, tmpl in pod_templates(objects).items():
        spec = tmpl["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec.get("automountServiceAccountToken") is False, name
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name
            assert not c["image"].endswith(":latest"), name


def test_triton_is_scheduled_on_gpu_nodes(objects):
    spec = pod_templates(objects)["aesrm-triton"]["spec"]
    (c,) = spec["containers"]
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert spec["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert {v["name"]: v for v in spec["volumes"]}["dshm"]["emptyDir"]["medium"] == "Memory"
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/dev/shm"}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert "aesrm_proxy" in env["TRITON_LOAD_MODELS"].split(",")


def test_redis_is_an_unpersisted_lru_cache(objects):
    assert not by_kind(objects, "PersistentVolumeClaim") and not by_kind(objects, "StatefulSet")
    (c,) = pod_templates(objects)["aesrm-redis"]["spec"]["containers"]
    args = c["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"


def test_hpa_pdb_and_network_policy_target_real_objects(objects):
    tmpl = pod_templates(objects)
    hpa = get(objects, "HorizontalPodAutoscaler", "aesrm-gateway")
    ref = hpa["spec"]["scaleTargetRef"]
    assert ref["kind"] == "Deployment" and ref["name"] in tmpl
    assert "replicas" not in get(objects, "Deployment", ref["name"])["spec"], "HPA owns the replica count"
    assert hpa["spec"]["minReplicas"] >= 2
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
    for pdb in by_kind(objects, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        assert sum(matches(sel, t["metadata"]["labels"]) for t in tmpl.values()) == 1
    for np_ in by_kind(objects, "NetworkPolicy"):
        assert any(matches(np_["spec"]["podSelector"]["matchLabels"], t["metadata"]["labels"]) for t in tmpl.values())
        for rule in np_["spec"]["ingress"]:
            for peer in rule["from"]:
                assert any(matches(peer["podSelector"]["matchLabels"], t["metadata"]["labels"]) for t in tmpl.values())


def test_kustomize_images_match_containers(objects):
    k = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    images = {c["image"].rsplit(":", 1)[0] for t in pod_templates(objects).values() for c in t["spec"]["containers"]}
    for img in k["images"]:
        assert img["name"] in images


def test_service_monitors_select_services_and_ports(objects):
    monitors = by_kind(objects, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"aesrm-gateway", "aesrm-triton"}
    services = by_kind(objects, "Service")
    for sm in monitors:
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        targets = [s for s in services if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert len(targets) == 1, sm["metadata"]["name"]
        port_names = {p["name"] for p in targets[0]["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            assert ep["port"] in port_names and ep["path"] == "/metrics"
            assert re.fullmatch(r"\d+s", ep["interval"])
    # the compose Prometheus uses the same job names the ServiceMonitors produce (job = Service name)
    prom = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    assert {j["job_name"] for j in prom["scrape_configs"]} == {s["metadata"]["name"] for s in services
                                                               if any(matches(m["spec"]["selector"]["matchLabels"],
                                                                              s["metadata"]["labels"]) for m in monitors)}


# ----------------------------------------------------------------------------------------------------
# alerts and dashboard


def test_prometheus_rule_structure():
    (rule,) = load_yaml_docs(PROMRULE)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    required = {"AesrmHighP99Latency", "AesrmServerErrors", "AesrmBackendNotReady", "AesrmCacheErrors",
                "AesrmQueueSaturated", "AesrmTritonInferenceFailures", "AesrmExplainBacklog"}
    assert required <= set(alerts), required - set(alerts)
    for name, r in alerts.items():
        assert r["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert r["annotations"]["summary"] and r["annotations"]["description"], name
        assert re.fullmatch(r"\d+[smh]", r["for"]), name


def test_alert_and_dashboard_metric_names_are_exported():
    known = exported_series_names() | recorded_names()
    used: dict[str, set[str]] = {}
    for g in prometheus_rule_groups():
        for r in g["rules"]:
            used.setdefault("rule " + r.get("alert", r.get("record", "?")), set()).update(promql_metric_names(r["expr"]))
    d = dashboard()
    for p in dashboard_panels(d):
        for t in p.get("targets", []):
            used.setdefault(f"panel {p['title']!r}", set()).update(promql_metric_names(t["expr"]))
    for v in d["templating"]["list"]:
        inner = re.search(r"label_values\((.*),\s*\w+\)", v["query"]["query"]).group(1)
        used.setdefault(f"variable {v['name']}", set()).update(promql_metric_names(inner))
    unknown = {where: names - known for where, names in used.items() if names - known}
    assert not unknown, f"metric names not exported by service/metrics.py or Triton: {unknown}"
    # and the contract metrics are all actually used somewhere
    all_used = set().union(*used.values())
    for name in ("aesrm_stage_duration_seconds_bucket", "aesrm_batch_size_bucket", "aesrm_cache_requests_total",
                 "aesrm_in_flight_requests", "aesrm_errors_total", "nv_inference_queue_duration_us",
                 "nv_inference_compute_infer_duration_us", "nv_gpu_utilization"):
        assert name in all_used, name


def test_metric_name_extractor_catches_typos():
    assert promql_metric_names(
        'histogram_quantile(0.99, sum by (le, route) (rate(aesrm_request_duration_seconds_bucket{route=~"/v1/.*"}[5m])))'
    ) == {"aesrm_request_duration_seconds_bucket"}
    assert promql_metric_names('sum(rate(nv_inference_queue_duration_us{job=~"$j"}[$__rate_interval])) / 1e6 > 0.1 '
                               'and on (model) aesrm_typo_total') == {"nv_inference_queue_duration_us", "aesrm_typo_total"}
    assert "aesrm_typo_total" not in exported_series_names()
    assert "aesrm_request_duration_seconds_bucket" in exported_series_names()


def test_dashboard_structure():
    provisioning = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert [ds["uid"] for ds in provisioning["datasources"]] == [DATASOURCE_UID]
    d = dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    panels = dashboard_panels(d)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    variables = {v["name"] for v in d["templating"]["list"]}
    for v in d["templating"]["list"]:
        assert v["datasource"]["uid"] == DATASOURCE_UID
    occupied: set[tuple[int, int]] = set()
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 15
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & occupied, f"panel {p['title']!r} overlaps another"
        occupied |= cells
    for p in graphs:
        assert p["datasource"]["uid"] == DATASOURCE_UID, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == DATASOURCE_UID
            assert t["expr"].count("(") == t["expr"].count(")"), (p["title"], t["expr"])
            for var in re.findall(r"\$(\w+)", t["expr"]):
                assert var.startswith("__") or var in variables, (p["title"], var)
    exprs = " ".join(t["expr"] for p in graphs for t in p["targets"])
    assert "histogram_quantile(0.99, sum by (le, route)" in exprs  # latency quantiles per route


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def _write_rules(tmp_path: Path) -> Path:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": prometheus_rule_groups()}, sort_keys=False))
    return rules


def test_promtool_check_rules(promtool, tmp_path):
    out = subprocess.run([promtool, "check", "rules", str(_write_rules(tmp_path))],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_check_compose_prometheus_config(promtool):
    out = subprocess.run([promtool, "check", "config", "--syntax-only", str(DOCKER / "prometheus.yml")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def _promtool_test(promtool: str, tmp_path: Path, tests: str) -> None:
    _write_rules(tmp_path)
    (tmp_path / "tests.yaml").write_text("rule_files: [rules.yaml]\nevaluation_interval: 30s\ntests:\n"
                                         + textwrap.indent(textwrap.dedent(tests), "  "))
    out = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_alerts_fire_as_intended(promtool, tmp_path):
    """Rule unit tests: the alerts fire on the failure they describe, and stay quiet when healthy."""
    g = 'job="aesrm-gateway", pod="gw-1"'
    t = 'job="aesrm-triton", model="aesrm_proxy"'
    _promtool_test(promtool, tmp_path, f"""\
        - interval: 15s
          input_series:
            - series: 'aesrm_backend_ready{{{g}}}'
              values: '1 1 1 0x40'
            - series: 'aesrm_request_duration_seconds_count{{{g}, route="/v1/pair", method="POST", status="200"}}'
              values: '0+100x60'
            - series: 'aesrm_errors_total{{{g}, code="backend_timeout"}}'
              values: '0+10x60'
            - series: 'aesrm_errors_total{{{g}, code="video_undecodable"}}'
              values: '0+50x60'
            - series: 'nv_inference_request_success{{{t}}}'
              values: '0+100x60'
            - series: 'nv_inference_request_failure{{{t}}}'
              values: '0x60'
          alert_rule_test:
            - eval_time: 10m
              alertname: AesrmBackendNotReady
              exp_alerts:
                - exp_labels: {{severity: critical, job: aesrm-gateway, pod: gw-1}}
                  exp_annotations:
                    summary: AesRM gateway gw-1 has no ready scoring backend
                    description: 'aesrm_backend_ready is 0 for 5 minutes: Triton unreachable / model not loaded, or embedded model failed to load.'
            - eval_time: 10m
              alertname: AesrmServerErrors
              exp_alerts:
                - exp_labels: {{severity: critical, code: backend_timeout}}
                  exp_annotations:
                    summary: AesRM backend_timeout errors at 10% of requests
                    description: More than 2% of scoring requests fail with backend_timeout for 5 minutes.
            - eval_time: 10m
              alertname: AesrmTritonInferenceFailures
              exp_alerts: []
        """)


def test_server_errors_alert_covers_every_5xx_code():
    """AesrmServerErrors must match every code the service answers with a 5xx (it once missed backend_error)."""
    from service import errors

    five_xx = {c.code for c in errors.ServiceError.__subclasses__() if c.status >= 500} | {"internal"}
    assert "backend_error" in five_xx
    (rule,) = [r for g in prometheus_rule_groups() for r in g["rules"] if r.get("alert") == "AesrmServerErrors"]
    regex = re.search(r'aesrm_errors_total\{code=~"([^"]+)"\}', rule["expr"]).group(1)
    assert {c for c in errors_codes_exported() if re.fullmatch(regex, c)} == five_xx


def errors_codes_exported() -> list[str]:
    from service.metrics import error_codes

    return error_codes()


def test_promtool_backend_error_and_unlabelled_targets(promtool, tmp_path):
    """backend_error (502) pages like the other 5xx; a not-ready gateway is found per target even where
    targets carry no pod label (docker compose / static configs), beside a ready one."""
    g = 'job="aesrm-gateway", instance="gateway-a:8000"'
    _promtool_test(promtool, tmp_path, f"""\
        - interval: 15s
          input_series:
            - series: 'aesrm_backend_ready{{{g}}}'
              values: '0x40'
            - series: 'aesrm_backend_ready{{job="aesrm-gateway", instance="gateway-b:8000"}}'
              values: '1x40'
            - series: 'aesrm_request_duration_seconds_count{{{g}, route="/v1/group", method="POST", status="200"}}'
              values: '0+100x40'
            - series: 'aesrm_errors_total{{{g}, code="backend_error"}}'
              values: '0+5x40'
          alert_rule_test:
            - eval_time: 8m
              alertname: AesrmBackendNotReady
              exp_alerts:
                - exp_labels: {{severity: critical, job: aesrm-gateway, instance: "gateway-a:8000"}}
                  exp_annotations:
                    summary: AesRM gateway gateway-a:8000 has no ready scoring backend
                    description: 'aesrm_backend_ready is 0 for 5 minutes: Triton unreachable / model not loaded, or embedded model failed to load.'
            - eval_time: 8m
              alertname: AesrmServerErrors
              exp_alerts:
                - exp_labels: {{severity: critical, code: backend_error}}
                  exp_annotations:
                    summary: AesRM backend_error errors at 5% of requests
                    description: More than 2% of scoring requests fail with backend_error for 5 minutes.
        """)


def _panel_exprs(title_part: str) -> list[str]:
    """Dashboard expressions of panels whose title contains `title_part`, Grafana variables filled in the way
    Grafana would for "All" and a 15 s scrape."""
    out = []
    for p in dashboard_panels(dashboard()):
        if title_part in p["title"] and p["type"] != "row":
            for t in p["targets"]:
                e = t["expr"].replace("$__rate_interval", "1m")
                out.append(re.sub(r"\$\w+", ".*", e))
    return out


def test_promtool_dashboard_cache_hit_ratio_panels_agree(promtool, tmp_path):
    """Both "Cache hit ratio" panels use one denominator (all lookups): with Redis failing for part of the
    lookups they still show the same number."""
    exprs = _panel_exprs("Cache hit ratio")
    assert len(exprs) == 2 and len(set(exprs)) == 1, exprs
    g = 'job="aesrm-gateway", instance="gw:8000"'
    cases = "\n".join(f"""\
                - expr: 'round({e}, 0.001)'
                  eval_time: 5m
                  exp_samples:
                    - value: 0.5""" for e in exprs)
    _promtool_test(promtool, tmp_path, f"""\
        - interval: 15s
          input_series:
            - series: 'aesrm_cache_requests_total{{{g}, result="hit"}}'
              values: '0+50x40'
            - series: 'aesrm_cache_requests_total{{{g}, result="miss"}}'
              values: '0+25x40'
            - series: 'aesrm_cache_requests_total{{{g}, result="error"}}'
              values: '0+20x40'
            - series: 'aesrm_cache_requests_total{{{g}, result="bypass"}}'
              values: '0+5x40'
          promql_expr_test:
{cases}
        """)


def test_promtool_explain_duration_reads_a_value_between_rare_jobs(promtool, tmp_path):
    """One explanation job (0.75 s) finished at minute 1: five minutes later the p50/p95 panel still shows
    it (a 1-minute window read NaN); 20 minutes later the panel is empty rather than NaN."""
    p50, p95 = _panel_exprs("Explanation job duration")
    g = 'job="aesrm-gateway", instance="gw:8000"'
    series = "\n".join(f"""\
            - series: 'aesrm_explain_job_duration_seconds_bucket{{{g}, le="{le}"}}'
              values: '{v}'""" for le, v in (("0.5", "0x120"), ("1", "0x4 1x116"), ("+Inf", "0x4 1x116")))
    _promtool_test(promtool, tmp_path, f"""\
        - interval: 15s
          input_series:
{series}
          promql_expr_test:
            - expr: '{p50}'
              eval_time: 6m
              exp_samples:
                - value: 0.75
            - expr: '{p95}'
              eval_time: 6m
              exp_samples:
                - value: 0.975
            - expr: '{p50}'
              eval_time: 25m
              exp_samples: []
        """)


def test_promtool_first_error_is_seen_because_codes_start_at_zero(promtool, tmp_path):
    """The gateway exports every known error code at 0 from start-up (service/metrics.py), so the "Errors by
    code" panel shows the very first backend_error; a series born with its first increment (what the
    exporter did before) reads 0 there, which is why the codes are pre-created."""
    (expr,) = _panel_exprs("Errors by code")
    _promtool_test(promtool, tmp_path, f"""\
        - interval: 15s
          input_series:
            - series: 'aesrm_errors_total{{job="aesrm-gateway", code="backend_error"}}'
              values: '0x10 3x10'
            - series: 'aesrm_errors_total{{job="aesrm-gateway", code="backend_timeout"}}'
              values: '_x10 3x10'
          promql_expr_test:
            - expr: '({expr}) > bool 0'
              eval_time: 3m
              exp_samples:
                - labels: '{{code="backend_error"}}'
                  value: 1
                - labels: '{{code="backend_timeout"}}'
                  value: 0
        """)


# ----------------------------------------------------------------------------------------------------
# autoscaling on in-flight requests: the prometheus-adapter rule the HPA's Pods metric needs

ADAPTER_VALUES = DEPLOY / "prometheus-adapter" / "values.yaml"


def _adapter_rule() -> dict:
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    assert values["rules"]["default"] is False, "only our rule: the chart defaults expose every cAdvisor metric"
    assert values["prometheus"]["url"].startswith("http") and int(values["prometheus"]["port"]) > 0
    (rule,) = values["rules"]["custom"]
    return rule


def _hpa_pods_metric() -> tuple[str, float]:
    k = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    (patch,) = [yaml.safe_load(p["patch"]) for p in k["patches"] if p["target"]["kind"] == "HorizontalPodAutoscaler"]
    (op,) = patch
    metric = op["value"]["pods"]
    return metric["metric"]["name"], float(metric["target"]["averageValue"])


def test_adapter_rule_serves_the_metric_the_hpa_reads():
    rule = _adapter_rule()
    name, _ = _hpa_pods_metric()
    (series_name,) = promql_metric_names(rule["seriesQuery"])
    assert (series_name, "gauge") in gateway_metric_families(), series_name
    assert re.search(rule["name"]["matches"], series_name)
    assert re.sub(rule["name"]["matches"], rule["name"]["as"], series_name) == name
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    for word in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
        assert word in rule["metricsQuery"], word
    # the ServiceMonitor that produces those series is the gateway's, so namespace/pod labels are attached
    assert "aesrm-gateway" in {m["metadata"]["name"] for m in load_yaml_docs(MONITORING / "servicemonitors.yaml")}
    assert "prometheus-adapter/values.yaml" in (DEPLOY / "README.md").read_text()


def test_promtool_adapter_query_gives_one_value_per_pod(promtool, tmp_path):
    """The adapter's metricsQuery, rendered the way prometheus-adapter renders it for
    GET .../namespaces/aesrm/pods/*/aesrm_in_flight_requests, evaluated by promtool on sample series: one
    smoothed value per gateway pod of our namespace, nothing from other namespaces or unlabelled targets."""
    rule = _adapter_rule()
    query = (rule["metricsQuery"].replace("<<.Series>>", "aesrm_in_flight_requests")
             .replace("<<.LabelMatchers>>", 'namespace="aesrm",pod=~"gw-1|gw-2"').replace("<<.GroupBy>>", "pod"))
    series_q = rule["seriesQuery"]
    _promtool_test(promtool, tmp_path, f"""\
        - interval: 15s
          input_series:
            - series: 'aesrm_in_flight_requests{{job="aesrm-gateway", namespace="aesrm", pod="gw-1", instance="10.0.0.1:8000"}}'
              values: '80x20'
            - series: 'aesrm_in_flight_requests{{job="aesrm-gateway", namespace="aesrm", pod="gw-2", instance="10.0.0.2:8000"}}'
              values: '40x20'
            - series: 'aesrm_in_flight_requests{{job="aesrm-gateway", namespace="other", pod="gw-1", instance="10.0.9.1:8000"}}'
              values: '500x20'
            - series: 'aesrm_in_flight_requests{{job="aesrm-gateway", instance="gateway:8000"}}'
              values: '7x20'
          promql_expr_test:
            - expr: '{query}'
              eval_time: 4m
              exp_samples:
                - labels: '{{pod="gw-1"}}'
                  value: 80
                - labels: '{{pod="gw-2"}}'
                  value: 40
            - expr: 'count({series_q})'
              eval_time: 4m
              exp_samples:
                - value: 3
        """)


# ----------------------------------------------------------------------------------------------------
# docker/


def _dockerfiles() -> list[Path]:
    return [DOCKER / "gateway.Dockerfile", DOCKER / "triton.Dockerfile"]


def _ignored(rel: str, patterns: list[str]) -> bool:
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel.split("/")[0], pat):
            ignored = not neg
    return ignored


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: p.name)
def test_dockerfile_copy_sources_exist_and_are_not_ignored(dockerfile):
    patterns = dockerignore_patterns()
    copies = [args for instr, args in dockerfile_instructions(dockerfile)
              if instr in ("COPY", "ADD") and "--from=" not in args]
    assert copies
    for args in copies:
        parts = [a for a in args.split() if not a.startswith("--")]
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"{dockerfile.name}: COPY source {src} missing"
            assert not _ignored(src, patterns), f"{dockerfile.name}: COPY source {src} excluded by .dockerignore"


def test_dockerignore_keeps_secrets_and_venv_out():
    patterns = dockerignore_patterns()
    for path in (".git", ".venv", ".env", "tests", "service/__pycache__"):
        assert _ignored(path, patterns) or any(fnmatch.fnmatch(path, p) for p in patterns), path
    for path in ("service", "pyproject.toml", "model_repository", "README.md"):
        assert not _ignored(path, patterns), path


def test_gateway_image_contract():
    instr = dockerfile_instructions(DOCKER / "gateway.Dockerfile")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = json.loads(next(a for i, a in instr if i == "ENTRYPOINT"))
    assert entry[0] in scripts and entry[0] == "aesrm-serve"
    users = [a for i, a in instr if i == "USER"]
    assert users and not re.match(r"(root|0)\b", users[-1])
    health = next(a for i, a in instr if i == "HEALTHCHECK")
    assert "/health/ready" in health
    assert "8000" in [a for i, a in instr if i == "EXPOSE"]
    run = " ".join(a for i, a in instr if i == "RUN")
    assert "download.pytorch.org/whl/cpu" in " ".join(a for i, a in instr if i in ("ARG", "RUN"))
    assert "torch==" in run
    env = " ".join(a for i, a in instr if i == "ENV")
    assert "AESRM_HOST=0.0.0.0" in env


def test_triton_image_contract():
    instr = dockerfile_instructions(DOCKER / "triton.Dockerfile")
    base = next(a for i, a in instr if i == "ARG" and a.startswith("TRITON_IMAGE="))
    tag = base.split(":")[-1]
    # Python >= 3.11 (requires-python) means a 25.x or newer NGC image; 24.x ships 3.10.
    assert base.startswith("TRITON_IMAGE=nvcr.io/nvidia/tritonserver:") and int(tag.split(".")[0]) >= 25, base
    copies = " ".join(a for i, a in instr if i == "COPY")
    assert "model_repository /models" in copies and "service" in copies
    entry = " ".join(a for i, a in instr if i == "ENTRYPOINT")
    for flag in ("--model-repository=/models", "--model-control-mode=explicit", "--strict-readiness=true",
                 "--metrics-port=8002", "--grpc-port=8001", "--http-port=8000"):
        assert flag in entry, flag
    assert "/v2/health/ready" in next(a for i, a in instr if i == "HEALTHCHECK")
    assert next(a for i, a in reversed(instr) if i == "USER") not in ("root", "0")


def _run_triton_entrypoint(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """Run the image's real ENTRYPOINT script with bash, `tritonserver` on PATH replaced by a program that
    prints its argv: the flags the container would really start Triton with."""
    entry = json.loads(next(a for i, a in dockerfile_instructions(DOCKER / "triton.Dockerfile") if i == "ENTRYPOINT"))
    fake = tmp_path / "bin" / "tritonserver"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(0o755)
    image_env = {}
    for instr, args in dockerfile_instructions(DOCKER / "triton.Dockerfile"):
        if instr == "ENV":
            image_env.update(dict(kv.split("=", 1) for kv in args.split()))
    out = subprocess.run(entry, env={"PATH": f"{fake.parent}:/usr/bin:/bin", **image_env, **env},
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.splitlines()


def _effective_instance_kinds(model: str, config_name: str | None) -> set[str]:
    """Instance kinds Triton would use for `model` under --model-config-name (it falls back to config.pbtxt
    when <model>/configs/<name>.pbtxt does not exist)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    d = ROOT / "model_repository" / model
    path = d / "configs" / f"{config_name}.pbtxt" if config_name else d / "config.pbtxt"
    if not path.is_file():
        path = d / "config.pbtxt"
    cfg = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return {model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind) for g in cfg.instance_group}


def test_triton_entrypoint_selects_the_gpu_config_wherever_a_gpu_is_held(tmp_path, objects):
    """A GPU reserved for Triton must be the one the model runs on: compose and Kubernetes pass
    TRITON_MODEL_CONFIG_NAME=gpu, the entrypoint turns it into --model-config-name=gpu, and under that name
    every model loaded by default resolves to KIND_GPU instances (config.pbtxt alone is KIND_CPU)."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["triton"]
    (c,) = pod_templates(objects)["aesrm-triton"]["spec"]["containers"]
    k8s_env = {e["name"]: e["value"] for e in c["env"]}
    compose_env = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in compose["environment"].items()}
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) == 1 and compose["deploy"]["resources"]["reservations"]
    for where, env in (("kubernetes", k8s_env), ("compose", compose_env)):
        argv = _run_triton_entrypoint(tmp_path, env)
        assert "--model-config-name=gpu" in argv, (where, argv)
        loaded = [a.split("=", 1)[1] for a in argv if a.startswith("--load-model=")]
        assert loaded == env["TRITON_LOAD_MODELS"].split(","), where
        for model in loaded:
            assert _effective_instance_kinds(model, "gpu") == {"KIND_GPU"}, (where, model)
    # the CPU default really is CPU (so the flag above is what moves the model), and emptying the variable
    # drops the flag (the image on a CPU-only host)
    assert _effective_instance_kinds("aesrm_proxy", None) == {"KIND_CPU"}
    assert not [a for a in _run_triton_entrypoint(tmp_path, {"TRITON_MODEL_CONFIG_NAME": ""})
                if a.startswith("--model-config-name")]


def test_compose_stack():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) >= {"gateway", "triton", "redis", "prometheus", "grafana"}
    for name, svc in services.items():
        if "build" in svc:
            ctx = (DOCKER / svc["build"]["context"]).resolve()
            assert (ctx / svc["build"]["dockerfile"]).is_file(), name
        assert "image" in svc, name
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                assert (DOCKER / src).exists(), f"{name}: bind mount source {src} missing"
            else:
                assert src in compose.get("volumes", {}), f"{name}: undeclared named volume {src}"
        for dep in svc.get("depends_on", {}):
            assert dep in services, (name, dep)
    gw = services["gateway"]
    assert set(gw["environment"]) <= settings_env_names()
    assert gw["environment"]["AESRM_TRITON_URL"] == "triton:8001"
    assert gw["environment"]["AESRM_REDIS_URL"].startswith("redis://redis:6379/")
    devices = services["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["triton"]["profiles"] == ["gpu"]
    assert "allkeys-lru" in services["redis"]["command"]
    # Prometheus scrapes the compose services on their real ports
    prom = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = {t for j in prom["scrape_configs"] for sc in j["static_configs"] for t in sc["targets"]}
    assert targets == {"gateway:8000", "triton:8002"}
    # the dashboard is mounted from deploy/ (single copy) into the folder the provider reads
    provider = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/aesrm.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = [v for v in services["grafana"]["volumes"] if "aesrm-dashboard.json" in v]
    assert len(mounts) == 1
    src, dst = mounts[0].split(":")[:2]
    assert (DOCKER / src).resolve() == DASHBOARD and dst.startswith(path + "/")
    assert not list(DOCKER.rglob("*.json")), "dashboard JSON must live only in deploy/grafana/"
