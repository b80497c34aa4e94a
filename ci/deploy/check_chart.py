#!/usr/bin/env python3
"""Checks of the Helm chart charts/skype-gateway, runnable offline in CI.

What it does, in order:
  1. `helm lint --strict` (Helm's own Go SDK through helm-python-sdk) with every values file
     in charts/skype-gateway/ci/.
  2. Renders the chart with each of those files (Helm validates values.schema.json first, as
     `helm install` does) and validates every rendered manifest with kubernetes-validate in
     strict mode (unknown fields rejected) against the chart's minimum Kubernetes version and
     the newest one kubernetes-validate knows. The ServiceMonitor and the PrometheusRule are
     CRDs that kubernetes-validate has no schema for: they are validated against
     ci/deploy/schemas/servicemonitor-monitoring-v1.json and prometheusrule-monitoring-v1.json,
     subsets of prometheus-operator's CRD schemas written down in this repo.
  3. Asserts what matters in the rendered manifests (env vars, probes, security context,
     optional objects present exactly when enabled, ...).
  4. Renders with each file in ci/deploy/invalid-values/ and asserts that Helm REJECTS it with
     the error named in the file's `# expect-error:` line.
  5. Renders with extraEnv setting each variable the chart manages (config, demo, sharedCache,
     graphAuth) and asserts that Helm rejects each one, so none can be set twice or around its
     value.
  6. Self-tests: a manifest with a misspelt field must fail both validators, so a validator that
     silently passes everything is noticed.

Nothing here touches the network: Helm renders offline, kubernetes-validate and the
CRD schemas are local files.

Exit status: 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import yaml
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "skype-gateway"
CI_VALUES = CHART / "ci"
INVALID_VALUES = Path(__file__).resolve().parent / "invalid-values"
SERVICEMONITOR_SCHEMA = Path(__file__).resolve().parent / "schemas" / "servicemonitor-monitoring-v1.json"
PROMETHEUSRULE_SCHEMA = Path(__file__).resolve().parent / "schemas" / "prometheusrule-monitoring-v1.json"
# The chart's dashboard and alerting rules: the ConfigMap and the PrometheusRule carry them
# unchanged.
DASHBOARD = CHART / "files" / "dashboard.json"
ALERTS = CHART / "files" / "alerts.yaml"

RELEASE = "skype-gateway"
NAMESPACE = "skype"
# The chart's kubeVersion floor (native preStop sleep) and the newest schema set available.
KUBE_VERSIONS = ["1.30.0", kv_utils.latest_version()]

# The configuration table plus the shutdown, concurrency and connection settings:
# values key under `config` -> environment variable. The chart's `config` keys must be exactly
# these, so a setting added on one side only is caught.
CONFIG_ENV = {
    "graphBaseUrl": "SKYPE_GATEWAY_GRAPH_BASE_URL",
    "downloadAllowlist": "SKYPE_GATEWAY_DOWNLOAD_ALLOWLIST",
    "freshTtl": "SKYPE_GATEWAY_FRESH_TTL",
    "staleTtl": "SKYPE_GATEWAY_STALE_TTL",
    "cacheMaxBytes": "SKYPE_GATEWAY_CACHE_MAX_BYTES",
    "upstreamTimeout": "SKYPE_GATEWAY_UPSTREAM_TIMEOUT",
    "maxReportBytes": "SKYPE_GATEWAY_MAX_REPORT_BYTES",
    "maxDetailReportBytes": "SKYPE_GATEWAY_MAX_DETAIL_REPORT_BYTES",
    "maxRetries": "SKYPE_GATEWAY_MAX_RETRIES",
    "maxRetryWait": "SKYPE_GATEWAY_MAX_RETRY_WAIT",
    "workers": "SKYPE_GATEWAY_WORKERS",
    "shutdownDrain": "SKYPE_GATEWAY_SHUTDOWN_DRAIN",
    "shutdownTimeout": "SKYPE_GATEWAY_SHUTDOWN_TIMEOUT",
    "maxConcurrentUpstream": "SKYPE_GATEWAY_MAX_CONCURRENT_UPSTREAM",
    "maxQueuedUpstream": "SKYPE_GATEWAY_MAX_QUEUED_UPSTREAM",
    "graphBudget": "SKYPE_GATEWAY_GRAPH_BUDGET",
    "graphTenantBudget": "SKYPE_GATEWAY_GRAPH_TENANT_BUDGET",
    "graphBudgetReserve": "SKYPE_GATEWAY_GRAPH_BUDGET_RESERVE",
    "maxConnections": "SKYPE_GATEWAY_MAX_CONNECTIONS",
    "clientTimeout": "SKYPE_GATEWAY_CLIENT_TIMEOUT",
    "keepAlive": "SKYPE_GATEWAY_KEEP_ALIVE",
    "corsOrigins": "SKYPE_GATEWAY_CORS_ORIGINS",
    "logLevel": "RUST_LOG",
}
# Set by the demo itself (the simulator's URL), so the chart leaves them out in demo mode.
DEMO_OMITTED = {"graphBaseUrl", "downloadAllowlist"}

# sharedCache: keys naming an entry of the operator's Secret -> the variable read from it, and
# plain settings -> their variable (absent when null). With the rest, exactly the chart's keys.
SHARED_CACHE_SECRET_ENV = {
    "urlKey": "SKYPE_GATEWAY_REDIS_URL",
    "secretKey": "SKYPE_GATEWAY_SHARED_SECRET",
}
SHARED_CACHE_ENV = {
    "keyPrefix": "SKYPE_GATEWAY_REDIS_KEY_PREFIX",
    "timeout": "SKYPE_GATEWAY_REDIS_TIMEOUT",
}
SHARED_CACHE_OTHER_KEYS = {"enabled", "existingSecret", "port", "egressTo"}
# graphAuth, app mode only: plain settings -> their variable (lists joined with commas; the
# authority absent when empty), and the credential kinds -> the variable naming the file the
# gateway reads it from. With the rest, exactly the chart's keys.
GRAPH_AUTH_ENV = {
    "clientId": "SKYPE_GATEWAY_CLIENT_ID",
    "authorityUrl": "SKYPE_GATEWAY_AUTHORITY_URL",
    "tenants": "SKYPE_GATEWAY_TENANTS",
    "callerAudience": "SKYPE_GATEWAY_CALLER_AUDIENCE",
    "callerRole": "SKYPE_GATEWAY_CALLER_ROLE",
}
GRAPH_AUTH_FILE_ENV = {
    "clientSecret": "SKYPE_GATEWAY_CLIENT_SECRET_FILE",
    "certificate": "SKYPE_GATEWAY_CLIENT_CERTIFICATE_FILE",
    "workloadIdentity": "SKYPE_GATEWAY_CLIENT_ASSERTION_FILE",
}
GRAPH_AUTH_OTHER_KEYS = {"mode"}
# Where the Azure Workload Identity webhook projects the federated token, and how it is told to.
WORKLOAD_IDENTITY_TOKEN = "/var/run/secrets/azure/tokens/azure-identity-token"
WORKLOAD_IDENTITY_LABEL = ("azure.workload.identity/use", "true")
WORKLOAD_IDENTITY_CLIENT_ID = "azure.workload.identity/client-id"
# Stands in expected_env for a credential file variable, whose path check_rendering resolves
# against the pod's volumes.
CREDENTIAL_FILE = "<credential file>"
# Variables the gateway reads that the chart never sets, yet must keep extraEnv from setting:
# --demo is passed as an argument, a secret file would conflict with the secret from the
# Secret, and the client secret is passed as a file only.
CHART_OMITTED_ENV = ("SKYPE_GATEWAY_DEMO", "SKYPE_GATEWAY_SHARED_SECRET_FILE", "SKYPE_GATEWAY_CLIENT_SECRET")

STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)


# --- small parsers, independent of the chart's own template helpers --------------------------

_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_seconds(text: str) -> float:
    """Seconds in a duration of the subset of humantime that the values schema admits."""
    if not re.fullmatch(r"[0-9]+(ms|s|m|h|d)( ?[0-9]+(ms|s|m|h|d))*", text):
        raise ValueError(f"not a duration the chart admits: {text!r}")
    return sum(int(n) * _DURATION_MS[u] for n, u in _DURATION_PART.findall(text)) / 1000


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def memory_bytes(quantity: str | int | float) -> float:
    """Bytes in a Kubernetes memory quantity such as 512Mi or 1G."""
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(quantity))
    if not m:
        raise ValueError(f"not a quantity: {quantity!r}")
    number, suffix = float(m.group(1)), m.group(2)
    if suffix == "":
        return number
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    raise ValueError(f"unsupported memory suffix in {quantity!r}")


# --- bookkeeping -----------------------------------------------------------------------------


@dataclass
class Results:
    passed: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)
            print(f"    FAIL {what}")
        return ok


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def split_manifests(rendered: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """(template path, object) for every non-empty YAML document; NOTES.txt is not a manifest."""
    out = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((template, doc))
    return out


def render(chart: helm.Chart, values: dict[str, Any]) -> dict[str, str]:
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


# --- validators ------------------------------------------------------------------------------


class ManifestValidator:
    """kubernetes-validate (strict) for built-in kinds, the CRD subset schemas for
    prometheus-operator's ServiceMonitor and PrometheusRule."""

    CRD_SCHEMAS = {"ServiceMonitor": SERVICEMONITOR_SCHEMA, "PrometheusRule": PROMETHEUSRULE_SCHEMA}

    def __init__(self) -> None:
        self.crd_schemas = {kind: json.loads(path.read_text()) for kind, path in self.CRD_SCHEMAS.items()}
        for schema in self.crd_schemas.values():
            jsonschema.Draft202012Validator.check_schema(schema)
        self._crd_validators: dict[tuple[str, str], jsonschema.Draft202012Validator] = {}

    def _crd_validator(self, kind: str, kube_version: str) -> jsonschema.Draft202012Validator:
        if (kind, kube_version) not in self._crd_validators:
            # The same definitions file kubernetes-validate resolves ObjectMeta etc. against.
            schema_version = [
                v
                for v in kv_utils.all_versions()
                if kv_utils.major_minor(v) <= kv_utils.major_minor(kube_version)
            ][-1]
            definitions = kv_utils.schema_contents(
                f"kubernetes-json-schema/v{schema_version}-local-strict/_definitions.json", kube_version
            )
            registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
            self._crd_validators[(kind, kube_version)] = jsonschema.Draft202012Validator(
                self.crd_schemas[kind], registry=registry
            )
        return self._crd_validators[(kind, kube_version)]

    def errors(self, manifest: dict[str, Any], kube_version: str) -> list[str]:
        if (
            manifest.get("apiVersion") == "monitoring.coreos.com/v1"
            and manifest.get("kind") in self.CRD_SCHEMAS
        ):
            validator = self._crd_validator(manifest["kind"], kube_version)
            return [
                f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in validator.iter_errors(manifest)
            ]
        try:
            kubernetes_validate.validate(manifest, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            return [f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}"]
        except kv_utils.SchemaNotFoundError as e:
            # A kind without a schema is a failure here, not a warning as in the CLI.
            return [e.message]
        return []


# --- assertions on one rendering -------------------------------------------------------------


def by_kind(manifests: list[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for _, m in manifests:
        kinds.setdefault(m["kind"], []).append(m)
    return kinds


def is_test_hook(m: dict[str, Any]) -> bool:
    return (m.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook") == "test"


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def graph_auth_credential(values: dict[str, Any]) -> str | None:
    """The graphAuth credential kind in use (a key of GRAPH_AUTH_FILE_ENV), None in passthrough."""
    auth = values["graphAuth"]
    if auth["mode"] != "app":
        return None
    kinds = [k for k in ("clientSecret", "certificate") if auth[k]["existingSecret"]]
    if auth["workloadIdentity"]["enabled"]:
        kinds.append("workloadIdentity")
    if len(kinds) != 1:
        raise ValueError(f"app mode rendered with credentials {kinds}: the schema admits exactly one")
    return kinds[0]


def expected_env(values: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """Env var -> the EnvVar expected in the container (None: must be absent), computed from the
    merged values. Every variable the chart manages is a key, set or not. A credential file's
    variable is expected as CREDENTIAL_FILE."""
    config = values["config"]
    demo = values["demo"]["enabled"]
    plain: dict[str, str | None] = {"SKYPE_GATEWAY_LISTEN": f"0.0.0.0:{int(values['containerPort'])}"}
    for key, var in CONFIG_ENV.items():
        value = config.get(key)
        if demo and key in DEMO_OMITTED:
            plain[var] = None
        elif value is None:
            plain[var] = None
        elif key == "downloadAllowlist":
            plain[var] = ",".join(value)
        elif key == "corsOrigins":
            plain[var] = ",".join(value) if value else None
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            plain[var] = str(int(value))
        else:
            plain[var] = str(value)
    shared = values["sharedCache"]
    for key, var in SHARED_CACHE_ENV.items():
        value = shared.get(key)
        plain[var] = str(value) if shared["enabled"] and value is not None else None
    auth = values["graphAuth"]
    app = auth["mode"] == "app"
    plain["SKYPE_GATEWAY_GRAPH_AUTH"] = "app" if app else None
    for key, var in GRAPH_AUTH_ENV.items():
        value = auth[key]
        if not app or value in ("", []):
            plain[var] = None
        elif isinstance(value, list):
            plain[var] = ",".join(value)
        else:
            plain[var] = str(value)
    credential = graph_auth_credential(values)
    for key, var in GRAPH_AUTH_FILE_ENV.items():
        plain[var] = CREDENTIAL_FILE if key == credential else None
    for var in CHART_OMITTED_ENV:
        plain[var] = None
    env: dict[str, dict[str, Any] | None] = {
        var: None if value is None else {"name": var, "value": value} for var, value in plain.items()
    }
    # Only ever a reference: the URL (which may carry a password) and the secret stay in the Secret.
    for key, var in SHARED_CACHE_SECRET_ENV.items():
        env[var] = (
            {
                "name": var,
                "valueFrom": {"secretKeyRef": {"name": shared["existingSecret"], "key": shared[key]}},
            }
            if shared["enabled"]
            else None
        )
    return env


def check_graph_auth(res: Results, prefix: str, values, pod, container, env, kinds) -> None:
    """App mode's credential: the one Secret key mounted read-only where its variable points (or
    the webhook's token, with its label and annotation); no volume, label or annotation else."""
    auth = values["graphAuth"]
    credential = graph_auth_credential(values)
    volumes = pod["spec"].get("volumes") or []
    mounts = container.get("volumeMounts") or []
    if credential in ("clientSecret", "certificate"):
        var = GRAPH_AUTH_FILE_ENV[credential]
        want_secret = auth[credential]
        ok = res.check(
            len(volumes) == 1 and len(mounts) == 1 and mounts[0]["name"] == volumes[0]["name"],
            f"{prefix} one volume, mounted once, for {credential} (got {volumes}, {mounts})",
        )
        if not ok:
            return
        volume, mount = volumes[0], mounts[0]
        secret = volume.get("secret") or {}
        items = secret.get("items") or []
        res.check(
            secret.get("secretName") == want_secret["existingSecret"]
            and len(items) == 1
            and items[0].get("key") == want_secret["key"],
            f"{prefix} {credential} volume holds only key {want_secret['key']!r} of Secret "
            f"{want_secret['existingSecret']!r} (got {secret})",
        )
        res.check(
            secret.get("defaultMode") == 0o440,
            f"{prefix} {credential} file readable by owner and group only "
            f"(got {secret.get('defaultMode')!r})",
        )
        res.check(mount.get("readOnly") is True, f"{prefix} {credential} mounted read-only")
        res.check(
            "subPath" not in mount,
            f"{prefix} {credential} mounted as a directory, so a rotated Secret reaches the pod",
        )
        if items:
            path = f"{mount['mountPath'].rstrip('/')}/{items[0].get('path')}"
            got = (env.get(var) or {}).get("value")
            res.check(got == path, f"{prefix} env {var} names the mounted file {path} (got {got!r})")
    else:
        res.check(not volumes, f"{prefix} no volume outside a mounted credential (got {volumes})")
        res.check(not mounts, f"{prefix} no volume mount outside a mounted credential (got {mounts})")

    wi = credential == "workloadIdentity"
    labels = pod["metadata"]["labels"]
    label, label_value = WORKLOAD_IDENTITY_LABEL
    res.check(
        labels.get(label) == label_value if wi else label not in labels,
        f"{prefix} pod label {label}: {label_value if wi else 'absent'} (got {labels.get(label)!r})",
    )
    if wi:
        got = (env.get(GRAPH_AUTH_FILE_ENV["workloadIdentity"]) or {}).get("value")
        res.check(
            got == WORKLOAD_IDENTITY_TOKEN,
            f"{prefix} env SKYPE_GATEWAY_CLIENT_ASSERTION_FILE is the webhook's token "
            f"{WORKLOAD_IDENTITY_TOKEN} (got {got!r})",
        )
    for key, value in (values.get("podLabels") or {}).items():
        res.check(labels.get(key) == value, f"{prefix} pod label {key} from podLabels kept")
    for sa in kinds.get("ServiceAccount", []):
        annotations = sa["metadata"].get("annotations") or {}
        want = dict(values["serviceAccount"].get("annotations") or {})
        if wi:
            want[WORKLOAD_IDENTITY_CLIENT_ID] = auth["clientId"]
        res.check(
            annotations == want,
            f"{prefix} ServiceAccount annotations: serviceAccount.annotations"
            f"{' + the workload identity client id' if wi else ''} (got {annotations})",
        )


def check_dashboard_and_rules(res: Results, prefix: str, values, kinds) -> None:
    """The dashboard ConfigMap holds files/dashboard.json byte for byte, with the sidecar's
    label; the PrometheusRule's spec is files/alerts.yaml; both where and as configured."""
    for cm in kinds.get("ConfigMap", []):
        d = values["dashboards"]
        meta = cm["metadata"]
        data = cm.get("data") or {}
        res.check(
            list(data) == ["skype-gateway.json"], f"{prefix} dashboard ConfigMap has one key (got {list(data)})"
        )
        text = data.get("skype-gateway.json", "")
        res.check(text == DASHBOARD.read_text(), f"{prefix} dashboard ConfigMap holds files/dashboard.json unchanged")
        try:
            dashboard = json.loads(text)
            res.check(
                dashboard.get("uid") == "skype-gateway" and bool(dashboard.get("panels")),
                f"{prefix} dashboard JSON has its uid and panels",
            )
        except json.JSONDecodeError as e:
            res.check(False, f"{prefix} dashboard ConfigMap's JSON does not parse: {e}")
        key, value = d["label"]["key"], d["label"]["value"]
        got = meta["labels"].get(key)
        res.check(
            got == value and isinstance(got, str),
            f"{prefix} dashboard ConfigMap labelled {key}: {value!r} for the sidecar (got {got!r})",
        )
        res.check(
            (meta.get("annotations") or {}) == (d.get("annotations") or {}),
            f"{prefix} dashboard ConfigMap annotations as configured (got {meta.get('annotations')})",
        )
        want_ns = d["namespace"] or NAMESPACE
        res.check(meta.get("namespace") == want_ns, f"{prefix} dashboard ConfigMap in namespace {want_ns}")
    for rule in kinds.get("PrometheusRule", []):
        r = values["prometheusRule"]
        meta = rule["metadata"]
        res.check(
            rule["spec"] == yaml.safe_load(ALERTS.read_text()),
            f"{prefix} PrometheusRule spec == files/alerts.yaml",
        )
        for k, v in (r.get("additionalLabels") or {}).items():
            res.check(meta["labels"].get(k) == v, f"{prefix} PrometheusRule label {k}={v}")
        want_ns = r["namespace"] or NAMESPACE
        res.check(meta.get("namespace") == want_ns, f"{prefix} PrometheusRule in namespace {want_ns}")
        alerts = [x for g in rule["spec"]["groups"] for x in g["rules"]]
        res.check(
            bool(alerts)
            and all({"summary", "description", "runbook"} <= set(x.get("annotations") or {}) for x in alerts),
            f"{prefix} every alert has a summary, a description and a runbook",
        )


def check_rendering(res: Results, name: str, values: dict[str, Any], manifests) -> None:
    kinds = by_kind(manifests)
    prefix = f"[{name}]"

    # Presence of optional objects: exactly when enabled.
    auto = values["autoscaling"]["enabled"]
    pdb_expected = values["podDisruptionBudget"]["enabled"] and (auto or int(values["replicaCount"]) > 1)
    for kind, expected in [
        ("Deployment", True),
        ("Service", True),
        ("ServiceAccount", values["serviceAccount"]["create"]),
        ("HorizontalPodAutoscaler", auto),
        ("PodDisruptionBudget", pdb_expected),
        ("ServiceMonitor", values["serviceMonitor"]["enabled"]),
        ("NetworkPolicy", values["networkPolicy"]["enabled"]),
        ("ConfigMap", values["dashboards"]["enabled"]),
        ("PrometheusRule", values["prometheusRule"]["enabled"]),
    ]:
        count = len(kinds.get(kind, []))
        res.check(
            count == (1 if expected else 0),
            f"{prefix} {kind}: expected {1 if expected else 0}, rendered {count}",
        )

    # Every object carries the chart's standard labels (the labels include).
    for template, m in manifests:
        labels = m["metadata"].get("labels") or {}
        missing = [label for label in STANDARD_LABELS if label not in labels]
        res.check(not missing, f"{prefix} {template} {m['kind']}: missing labels {missing}")

    deployment = kinds["Deployment"][0]
    pod = deployment["spec"]["template"]
    pod_spec = pod["spec"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    containers = pod_spec["containers"]
    res.check(len(containers) == 1, f"{prefix} one container in the pod, found {len(containers)}")
    container = containers[0]

    res.check(
        selects(selector, pod["metadata"]["labels"]), f"{prefix} pod labels match the Deployment selector"
    )
    res.check(
        ("replicas" not in deployment["spec"])
        if auto
        else deployment["spec"].get("replicas") == values["replicaCount"],
        f"{prefix} Deployment replicas {'absent under autoscaling' if auto else '== replicaCount'}",
    )

    # Image: the chart's tag, never a moving one.
    image = container["image"]
    res.check(
        not image.endswith(":latest") and ":" in image.rsplit("/", 1)[-1],
        f"{prefix} image is pinned to a tag: {image}",
    )

    # Env: each config value reaches its variable; nothing unexpected with the app's prefix.
    env_list = container.get("env", [])
    env = {e["name"]: e for e in env_list}
    names = [e["name"] for e in env_list]
    res.check(len(names) == len(set(names)), f"{prefix} no env var is set twice: {names}")
    for var, want in expected_env(values).items():
        if want is None:
            res.check(var not in env, f"{prefix} env {var} absent (got {env.get(var)!r})")
        elif want.get("value") == CREDENTIAL_FILE:
            res.check(
                set(env.get(var) or {}) == {"name", "value"},
                f"{prefix} env {var}: a plain path (got {env.get(var)!r})",
            )
        else:
            res.check(env.get(var) == want, f"{prefix} env {var}: {want!r} (got {env.get(var)!r})")
    managed = set(expected_env(values)) | {e["name"] for e in values.get("extraEnv", [])}
    stray = [n for n in names if n not in managed]
    res.check(not stray, f"{prefix} no env var beyond the chart's settings and extraEnv: {stray}")
    for extra in values.get("extraEnv", []):
        res.check(
            any(e == extra for e in env_list), f"{prefix} extraEnv {extra['name']} passed through as given"
        )

    check_graph_auth(res, prefix, values, pod, container, env, kinds)

    # Demo mode: the flag, and only then.
    args = container.get("args")
    if values["demo"]["enabled"]:
        res.check(args == ["--demo"], f"{prefix} demo: args == ['--demo'] (got {args})")
    else:
        res.check(not args, f"{prefix} no args outside demo mode (got {args})")

    # Port and probes.
    ports = container.get("ports", [])
    res.check(
        ports == [{"name": "http", "containerPort": values["containerPort"], "protocol": "TCP"}],
        f"{prefix} container port http/{values['containerPort']} (got {ports})",
    )
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        http_get = (container.get(probe) or {}).get("httpGet") or {}
        res.check(
            http_get.get("path") == path and http_get.get("port") == "http",
            f"{prefix} {probe} GET {path} on port http (got {http_get})",
        )

    # Security context.
    psc = pod_spec.get("securityContext") or {}
    res.check(psc.get("runAsNonRoot") is True, f"{prefix} pod runAsNonRoot")
    res.check(psc.get("runAsUser") == 65532, f"{prefix} pod runAsUser 65532")
    res.check(
        (psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
        f"{prefix} pod seccomp RuntimeDefault",
    )
    csc = container.get("securityContext") or {}
    for key, want in [
        ("runAsNonRoot", True),
        ("runAsUser", 65532),
        ("readOnlyRootFilesystem", True),
        ("allowPrivilegeEscalation", False),
    ]:
        got = csc.get(key)
        res.check(
            type(got) is type(want) and got == want,
            f"{prefix} container securityContext.{key} == {want} (got {got!r})",
        )
    res.check(csc.get("privileged") in (None, False), f"{prefix} container not privileged")
    res.check(
        (csc.get("capabilities") or {}).get("drop") == ["ALL"], f"{prefix} container drops ALL capabilities"
    )
    res.check(not (csc.get("capabilities") or {}).get("add"), f"{prefix} container adds no capability")
    res.check(
        (csc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
        f"{prefix} container seccomp RuntimeDefault",
    )
    res.check(
        pod_spec.get("automountServiceAccountToken") is False, f"{prefix} pod mounts no service account token"
    )
    res.check(
        pod_spec.get("enableServiceLinks") is False,
        f"{prefix} service links off (their env vars share the SKYPE_GATEWAY_ prefix)",
    )
    for sa in kinds.get("ServiceAccount", []):
        res.check(
            sa.get("automountServiceAccountToken") is False,
            f"{prefix} ServiceAccount automountServiceAccountToken false",
        )

    # Graceful shutdown: preStop sleep (no exec: distroless), then drain, then timeout, all
    # inside the grace period.
    pre_stop = ((container.get("lifecycle") or {}).get("preStop")) or {}
    sleep_s = values["lifecycle"]["preStopSleepSeconds"]
    if sleep_s:
        res.check(
            pre_stop == {"sleep": {"seconds": sleep_s}},
            f"{prefix} preStop is a native sleep of {sleep_s}s (got {pre_stop})",
        )
    else:
        res.check(not pre_stop, f"{prefix} no preStop hook when preStopSleepSeconds is 0")
    needed = (
        sleep_s
        + duration_seconds(values["config"]["shutdownDrain"])
        + duration_seconds(values["config"]["shutdownTimeout"])
    )
    grace = pod_spec.get("terminationGracePeriodSeconds")
    res.check(
        isinstance(grace, int) and grace > needed,
        f"{prefix} terminationGracePeriodSeconds {grace} > preStop + drain + timeout = {needed:g}",
    )

    # Resources: requests and limits; the memory limit leaves room above the cache ceiling.
    resources = container.get("resources") or {}
    for kind_ in ("requests", "limits"):
        for res_name in ("cpu", "memory"):
            res.check(res_name in (resources.get(kind_) or {}), f"{prefix} resources.{kind_}.{res_name} set")
    limit = (resources.get("limits") or {}).get("memory")
    if limit is not None:
        cache = values["config"]["cacheMaxBytes"]
        res.check(
            memory_bytes(limit) >= 1.25 * cache,
            f"{prefix} memory limit {limit} leaves 25% headroom above cacheMaxBytes {int(cache)}",
        )

    # Service: selects the gateway pods, port http -> targetPort http.
    service = kinds["Service"][0]
    res.check(service["spec"]["selector"] == selector, f"{prefix} Service selector == Deployment selector")
    service_ports = service["spec"].get("ports") or [{}]
    res.check(
        len(service_ports) == 1
        and service_ports[0].get("name") == "http"
        and service_ports[0].get("targetPort") == "http"
        and service_ports[0].get("port") == values["service"]["port"],
        f"{prefix} Service port http -> targetPort http (got {service_ports})",
    )
    res.check(service["spec"]["type"] == values["service"]["type"], f"{prefix} Service type")

    for hpa in kinds.get("HorizontalPodAutoscaler", []):
        spec = hpa["spec"]
        res.check(
            spec["scaleTargetRef"]
            == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]},
            f"{prefix} HPA targets the Deployment",
        )
        res.check(
            spec["minReplicas"] == values["autoscaling"]["minReplicas"]
            and spec["maxReplicas"] == values["autoscaling"]["maxReplicas"],
            f"{prefix} HPA min/max replicas",
        )
        targets = {
            m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in spec["metrics"]
        }
        res.check(
            targets.get("cpu") == values["autoscaling"]["targetCPUUtilizationPercentage"],
            f"{prefix} HPA CPU target",
        )
        mem = values["autoscaling"].get("targetMemoryUtilizationPercentage")
        res.check(
            targets.get("memory") == mem, f"{prefix} HPA memory target {mem} (got {targets.get('memory')})"
        )

    for pdb in kinds.get("PodDisruptionBudget", []):
        spec = pdb["spec"]
        res.check(spec["selector"]["matchLabels"] == selector, f"{prefix} PDB selects the gateway pods")
        want_min = values["podDisruptionBudget"].get("minAvailable")
        if want_min is not None:
            res.check(
                spec.get("minAvailable") == want_min and "maxUnavailable" not in spec,
                f"{prefix} PDB minAvailable {want_min}",
            )
            if isinstance(want_min, int):
                fewest = values["autoscaling"]["minReplicas"] if auto else values["replicaCount"]
                res.check(
                    want_min < fewest,
                    f"{prefix} PDB minAvailable {want_min} < {fewest} replicas, so a node drain can proceed",
                )
        else:
            want_max = values["podDisruptionBudget"].get("maxUnavailable")
            res.check(
                spec.get("maxUnavailable") == want_max and "minAvailable" not in spec,
                f"{prefix} PDB maxUnavailable {want_max}",
            )

    for sm in kinds.get("ServiceMonitor", []):
        spec = sm["spec"]
        endpoints = spec["endpoints"]
        res.check(
            len(endpoints) == 1 and endpoints[0]["port"] == "http" and endpoints[0]["path"] == "/metrics",
            f"{prefix} ServiceMonitor scrapes /metrics on port http",
        )
        res.check(
            selects(spec["selector"]["matchLabels"], service["metadata"]["labels"]),
            f"{prefix} ServiceMonitor selects the Service",
        )
        res.check(
            spec.get("namespaceSelector") == {"matchNames": [NAMESPACE]},
            f"{prefix} ServiceMonitor looks in the release namespace",
        )
        for k, v in (values["serviceMonitor"].get("labels") or {}).items():
            res.check(sm["metadata"]["labels"].get(k) == v, f"{prefix} ServiceMonitor label {k}={v}")
        res.check(
            endpoints[0].get("interval") == values["serviceMonitor"]["interval"],
            f"{prefix} ServiceMonitor interval",
        )

    check_dashboard_and_rules(res, prefix, values, kinds)

    for np in kinds.get("NetworkPolicy", []):
        spec = np["spec"]
        res.check(
            spec["podSelector"]["matchLabels"] == selector, f"{prefix} NetworkPolicy selects the gateway pods"
        )
        res.check(
            sorted(spec["policyTypes"]) == ["Egress", "Ingress"],
            f"{prefix} NetworkPolicy covers ingress and egress",
        )
        ingress = spec["ingress"]
        res.check(
            all(rule["ports"] == [{"port": "http", "protocol": "TCP"}] for rule in ingress),
            f"{prefix} NetworkPolicy admits only port http",
        )
        want_from = values["networkPolicy"]["ingress"]["from"]
        res.check(
            ingress[0].get("from", []) == want_from, f"{prefix} NetworkPolicy ingress.from as configured"
        )
        shared = values["sharedCache"]
        want_ports = [(53, "TCP"), (53, "UDP"), (443, "TCP")]
        if shared["enabled"]:
            want_ports.append((shared["port"], "TCP"))
        egress_ports = sorted((p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"])
        # Entra ID (app mode) is reached through the same HTTPS rule as Graph: its authority is
        # HTTPS on 443 by the schema, so the rule must stay as configured.
        https = [rule for rule in spec["egress"] if rule["ports"] == [{"port": 443, "protocol": "TCP"}]]
        entra = " and Entra ID" if values["graphAuth"]["mode"] == "app" else ""
        res.check(
            len(https) == 1 and https[0].get("to", []) == values["networkPolicy"]["egress"]["https"],
            f"{prefix} NetworkPolicy egress to Graph{entra}: TCP 443 to networkPolicy.egress.https "
            f"(got {https})",
        )
        res.check(
            egress_ports == sorted(want_ports),
            f"{prefix} NetworkPolicy egress is DNS + 443{' + Redis' if shared['enabled'] else ''} only "
            f"(got {egress_ports})",
        )
        if shared["enabled"]:
            redis_port = [{"port": shared["port"], "protocol": "TCP"}]
            redis_rules = [rule for rule in spec["egress"] if rule["ports"] == redis_port]
            res.check(
                len(redis_rules) == 1 and redis_rules[0].get("to", []) == shared["egressTo"],
                f"{prefix} NetworkPolicy egress to Redis: TCP {shared['port']} to sharedCache.egressTo "
                f"(got {redis_rules})",
            )
        test_pods = [m for _, m in manifests if is_test_hook(m)]
        if values["networkPolicy"]["ingress"]["allowHelmTest"] and want_from:
            res.check(
                any(
                    selects(peer.get("podSelector", {}).get("matchLabels", {}), t["metadata"]["labels"])
                    for rule in ingress
                    for peer in rule.get("from", [])
                    if "podSelector" in peer and "namespaceSelector" not in peer
                    for t in test_pods
                ),
                f"{prefix} NetworkPolicy admits the helm test pod",
            )

    # The helm test pod: hits /readyz through the Service, restricted, not counted as a gateway pod.
    tests = [m for _, m in manifests if is_test_hook(m)]
    res.check(len(tests) == 1, f"{prefix} one helm test pod, found {len(tests)}")
    for t in tests:
        tc = t["spec"]["containers"][0]
        url = f"http://{service['metadata']['name']}:{values['service']['port']}/readyz"
        res.check(url in tc.get("command", []), f"{prefix} helm test GETs {url}")
        res.check(
            not selects(selector, t["metadata"]["labels"]),
            f"{prefix} helm test pod is not selected as a gateway pod",
        )
        tsc = tc.get("securityContext") or {}
        res.check(
            tsc.get("runAsNonRoot") is True
            and tsc.get("readOnlyRootFilesystem") is True
            and tsc.get("allowPrivilegeEscalation") is False
            and (tsc.get("capabilities") or {}).get("drop") == ["ALL"]
            and (tsc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
            f"{prefix} helm test container is restricted",
        )
        timg = tc["image"]
        res.check(
            ":" in timg.rsplit("/", 1)[-1] and not timg.endswith(":latest"),
            f"{prefix} helm test image pinned: {timg}",
        )


# --- the run ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--verbose", action="store_true", help="print every rendered manifest's kind/name")
    args = parser.parse_args()

    res = Results()
    print(
        f"Helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}); "
        f"kubernetes-validate {kubernetes_validate.__version__}; "
        f"Kubernetes schemas {', '.join(KUBE_VERSIONS)}"
    )

    values_files = sorted(CI_VALUES.glob("*.yaml"))
    res.check(len(values_files) >= 4, f"at least 4 ci values files (found {len(values_files)})")
    chart = helm.Chart.load(CHART)

    # The chart's config, sharedCache and graphAuth keys are exactly the ones checked, so a
    # setting added on one side only is caught.
    defaults = chart.values
    for section, known in [
        ("config", set(CONFIG_ENV)),
        ("sharedCache", set(SHARED_CACHE_SECRET_ENV) | set(SHARED_CACHE_ENV) | SHARED_CACHE_OTHER_KEYS),
        ("graphAuth", set(GRAPH_AUTH_ENV) | set(GRAPH_AUTH_FILE_ENV) | GRAPH_AUTH_OTHER_KEYS),
    ]:
        keys = set(defaults[section])
        res.check(
            keys == known,
            f"values.yaml {section} keys == the ones checked (extra: {sorted(keys - known)}, "
            f"missing: {sorted(known - keys)})",
        )
    res.check(
        defaults["sharedCache"]["enabled"] is False, "sharedCache is off by default (in-process cache only)"
    )
    res.check(
        defaults["graphAuth"]["mode"] == "passthrough", "graphAuth.mode is passthrough by default"
    )
    res.check(
        defaults["graphAuth"]["callerRole"] == "Reports.Read",
        "graphAuth.callerRole defaults to the gateway's own default, Reports.Read",
    )

    # A values file that is not even YAML is a failure of its own, not a crash.
    parsed: dict[Path, dict[str, Any]] = {}
    for path in values_files:
        try:
            parsed[path] = load_values(path)
        except yaml.YAMLError as e:
            res.check(False, f"{path.name} is not valid YAML: {' '.join(str(e).split())}")
    values_files = [p for p in values_files if p in parsed]

    print("\n== helm lint --strict")
    for path in values_files:
        report = helm.lint(CHART, parsed[path], strict=True, kube_version=f"v{KUBE_VERSIONS[0]}")
        msgs = report.get("messages") or []
        by_sev = {sev: [m for m in msgs if m["severity"] == sev] for sev in (1, 2, 3)}
        ok = res.check(
            not report.get("errors") and not by_sev[2] and not by_sev[3],
            f"lint {path.name}: {report.get('errors')}",
        )
        counts = f"{len(by_sev[3])} errors, {len(by_sev[2])} warnings, {len(by_sev[1])} info"
        info = "; ".join(f"{m['path']}: {m['error']}" for m in by_sev[1])
        print(f"  {path.name}: {'PASS' if ok else 'FAIL'} ({counts}{': ' + info if info else ''})")
        for m in by_sev[2] + by_sev[3]:
            print(f"    {m['path']}: {m['error'].strip()}")

    print(f"\n== render + kubernetes-validate --strict ({', '.join(KUBE_VERSIONS)})")
    validator = ManifestValidator()
    summary = []
    for path in values_files:
        before_pass, before_fail = res.passed, len(res.failures)
        user_values = parsed[path]
        try:
            rendered = render(chart, user_values)
        except helm.HelmError as e:
            res.check(False, f"render {path.name}: {type(e).__name__}: {e}")
            summary.append((path.name, 0, 0))
            continue
        manifests = split_manifests(rendered)
        validated = 0
        for template, m in manifests:
            errs = []
            for kube_version in KUBE_VERSIONS:
                errs += [f"k8s {kube_version}: {err}" for err in validator.errors(m, kube_version)]
            if res.check(
                not errs, f"[{path.name}] {template} {m['kind']}/{m['metadata']['name']} valid: {errs}"
            ):
                validated += 1
            if args.verbose:
                print(f"    {m['kind']}/{m['metadata']['name']} ({template})")
        merged = chart.merge_values(user_values)
        try:
            check_rendering(res, path.name, merged, manifests)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            # A manifest too broken for the assertions to walk is a failure, not a crash.
            res.check(False, f"[{path.name}] assertions stopped at a missing or malformed field: {e!r}")
        kinds = ", ".join(f"{k}" for k in sorted(by_kind(manifests)))
        print(
            f"  {path.name}: {len(manifests)} manifests rendered, {validated} validated "
            f"[{kinds}]; {res.passed - before_pass} checks passed, {len(res.failures) - before_fail} failed"
        )
        summary.append((path.name, len(manifests), validated))

    print("\n== values that must be rejected (ci/deploy/invalid-values)")
    invalid_files = sorted(INVALID_VALUES.glob("*.yaml"))
    res.check(len(invalid_files) >= 2, f"at least 2 invalid values files (found {len(invalid_files)})")
    for path in invalid_files:
        text = path.read_text()
        m = re.search(r"^# expect-error: (.+)$", text, re.MULTILINE)
        if not res.check(m is not None, f"{path.name} has an '# expect-error:' line"):
            continue
        expected = m.group(1).strip()
        try:
            render(chart, yaml.safe_load(text) or {})
            res.check(False, f"{path.name}: rendered, but must be rejected ({expected})")
            print(f"  {path.name}: NOT REJECTED")
        except (helm.HelmValuesError, helm.HelmRenderError) as e:
            message = " ".join(str(e).split())
            ok = res.check(expected in message, f"{path.name}: rejected, but not for {expected!r}: {message}")
            print(
                f"  {path.name}: {'rejected' if ok else 'rejected for another reason'} "
                f"({type(e).__name__}): {message[:160]}"
            )

    print("\n== extraEnv may not set a variable the chart manages")
    managed_env = sorted(expected_env(chart.merge_values({})))
    refused = []
    for var in managed_env:
        try:
            render(chart, {"extraEnv": [{"name": var, "value": "x"}]})
            res.check(False, f"extraEnv {var}: rendered, but the chart manages it")
        except helm.HelmRenderError as e:
            if res.check(
                f"extraEnv sets {var}," in str(e), f"extraEnv {var}: rejected for another reason: {e}"
            ):
                refused.append(var)
    print(f"  {len(refused)} of {len(managed_env)} chart-managed variables refused")

    print("\n== validator self-tests (a misspelt field must fail)")
    rendered = render(chart, load_values(CI_VALUES / "monitoring-netpol-values.yaml"))
    kinds = by_kind(split_manifests(rendered))
    bad_deploy = copy.deepcopy(kinds["Deployment"][0])
    bad_deploy["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {
        "path": "/readyz"
    }
    errs = validator.errors(bad_deploy, KUBE_VERSIONS[0])
    res.check(bool(errs), "kubernetes-validate rejects a Deployment with an unknown field")
    print(f"  Deployment with readinessProbe.httpGett: {'rejected' if errs else 'ACCEPTED'}")
    bad_sm = copy.deepcopy(kinds["ServiceMonitor"][0])
    bad_sm["spec"]["endpoints"][0]["paht"] = "/metrics"
    errs = validator.errors(bad_sm, KUBE_VERSIONS[0])
    res.check(bool(errs), "ServiceMonitor schema rejects an unknown endpoint field")
    print(f"  ServiceMonitor with endpoints[0].paht: {'rejected' if errs else 'ACCEPTED'}")
    bad_sm = copy.deepcopy(kinds["ServiceMonitor"][0])
    bad_sm["spec"]["endpoints"][0]["interval"] = "15 seconds"
    errs = validator.errors(bad_sm, KUBE_VERSIONS[0])
    res.check(bool(errs), "ServiceMonitor schema rejects a malformed interval")
    print(f"  ServiceMonitor with interval '15 seconds': {'rejected' if errs else 'ACCEPTED'}")
    rendered = render(chart, load_values(CI_VALUES / "dashboards-alerts-values.yaml"))
    kinds = by_kind(split_manifests(rendered))
    bad_rule = copy.deepcopy(kinds["PrometheusRule"][0])
    bad_rule["spec"]["groups"][0]["rules"][0]["exprr"] = bad_rule["spec"]["groups"][0]["rules"][0].pop("expr")
    errs = validator.errors(bad_rule, KUBE_VERSIONS[0])
    res.check(bool(errs), "PrometheusRule schema rejects a rule with an unknown field and no expr")
    print(f"  PrometheusRule with rules[0].exprr: {'rejected' if errs else 'ACCEPTED'}")
    bad_rule = copy.deepcopy(kinds["PrometheusRule"][0])
    bad_rule["spec"]["groups"][0]["rules"][0]["for"] = "10 minutes"
    errs = validator.errors(bad_rule, KUBE_VERSIONS[0])
    res.check(bool(errs), "PrometheusRule schema rejects a malformed for")
    print(f"  PrometheusRule with for '10 minutes': {'rejected' if errs else 'ACCEPTED'}")

    print("\n== summary")
    for name, rendered_count, validated in summary:
        print(f"  {name}: {rendered_count} manifests rendered, {validated} validated")
    if res.failures:
        print(f"\n{len(res.failures)} check(s) failed:")
        for f in res.failures:
            print(f"  - {f}")
    print(f"chart: {res.passed} passed, {len(res.failures)} failed")
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
