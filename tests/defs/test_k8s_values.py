"""deploy/k8s/values.yaml is linted without `helm`: a JSON Schema of the parts of Dagster's Helm chart
(dagster-io/dagster helm/dagster: values.schema.json, generated from helm/dagster/schema) that the file
sets. Written here from the chart's key names and rules: where the chart forbids unknown keys
(`concurrency`, `runLauncher`, `dagsterDaemon`, the run coordinator), so does this schema, so a
misspelt key fails here instead of being silently ignored by `helm install`."""

import re
import tomllib

import jsonschema
import pytest
import yaml

from api.main import create_app
from image_pipeline.cli import build_parser
from image_pipeline.domain.settings import Settings
from tests.support.paths import ROOT

VALUES = ROOT / "deploy/k8s/values.yaml"


def closed(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


OBJ, INT, STR, BOOL = {"type": "object"}, {"type": "integer"}, {"type": "string"}, {"type": "boolean"}
NAMED = {"type": "array", "items": {"type": "object", "required": ["name"]}}
IMAGE = closed({"repository": STR, "tag": STR, "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}})
LOG_LEVELS = ["NOTSET", "DEBUG", "INFO", "WARNING", "WARN", "ERROR", "FATAL", "CRITICAL"]
TAG_LIMIT = closed(
    {
        "key": STR,
        "value": {"anyOf": [STR, closed({"applyLimitPerUniqueValue": BOOL}, ("applyLimitPerUniqueValue",))]},
        "limit": INT,
    },
    ("key", "limit"),
)
QUEUED = closed(
    {
        "maxConcurrentRuns": INT,
        "tagConcurrencyLimits": {"type": "array", "items": TAG_LIMIT},
        "dequeueIntervalSeconds": INT,
        "dequeueNumWorkers": INT,
        "dequeueUseThreads": BOOL,
        "blockOpConcurrencyLimitedRuns": OBJ,
    }
)
K8S_RUN_LAUNCHER = closed(
    {
        **dict.fromkeys(("image", "labels", "resources", "securityContext"), OBJ),
        **dict.fromkeys(("imagePullPolicy", "jobNamespace", "kubeconfigFile", "schedulerName"), STR),
        "loadInclusterConfig": BOOL,
        "failPodOnRunFailure": BOOL,
        **dict.fromkeys(("envConfigMaps", "envSecrets", "volumeMounts", "volumes"), NAMED),
        "envVars": {"type": "array", "items": STR},
        "runK8sConfig": closed(
            dict.fromkeys(
                ("containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"), OBJ
            )
        ),
    }
)
USER_DEPLOYMENT = {
    "type": "object",
    "required": ["name", "image", "port"],
    "properties": {
        "name": STR,
        "image": {**IMAGE, "required": ["repository", "tag", "pullPolicy"]},
        "dagsterApiGrpcArgs": {"type": "array", "items": STR},
        "port": INT,
        "env": {"anyOf": [{"type": "object"}, NAMED]},
        "envSecrets": NAMED,
        "envConfigMaps": NAMED,
    },
}
SCHEMA = {
    "type": "object",
    # Top-level keys of the chart's values (a key outside this list is ignored by the chart).
    "propertyNames": {
        "enum": [
            "dagsterWebserver",
            "dagster-user-deployments",
            "postgresql",
            "generatePostgresqlPasswordSecret",
            "generateCeleryConfigSecret",
            "rabbitmq",
            "redis",
            "flower",
            "ingress",
            "imagePullSecrets",
            "computeLogManager",
            "scheduler",
            "runLauncher",
            "pythonLogs",
            "dagsterDaemon",
            "busybox",
            "migrate",
            "telemetry",
            "serviceAccount",
            "global",
            "retention",
            "additionalInstanceConfig",
            "concurrency",
        ]
    },  # fmt: skip
    "properties": {
        "dagsterWebserver": {"type": "object", "properties": {"image": IMAGE}},
        "pythonLogs": closed(
            {
                "pythonLogLevel": {"enum": LOG_LEVELS},
                "managedPythonLoggers": {"type": "array"},
                "dagsterHandlerConfig": OBJ,
            }
        ),
        "telemetry": closed({"enabled": BOOL}),
        "dagster-user-deployments": {
            "type": "object",
            "properties": {"enabled": BOOL, "deployments": {"type": "array", "items": USER_DEPLOYMENT}},
        },
        "runLauncher": closed(
            {
                "type": {"enum": ["CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"]},
                "config": {
                    "type": "object",
                    "properties": {"k8sRunLauncher": K8S_RUN_LAUNCHER},
                },
            },
            ("type", "config"),
        ),
        "dagsterDaemon": {
            "type": "object",
            "properties": {
                "image": IMAGE,
                "runCoordinator": closed(
                    {
                        "enabled": BOOL,
                        "type": {"enum": ["QueuedRunCoordinator", "CustomRunCoordinator"]},
                        "config": {"type": "object", "properties": {"queuedRunCoordinator": QUEUED}},
                    },
                    ("enabled", "type", "config"),
                ),
                "runMonitoring": OBJ,
                "runRetries": OBJ,
            },
        },
        "concurrency": closed(
            {
                "enabled": BOOL,
                "pools": closed({"defaultLimit": INT, "granularity": STR, "opGranularityRunBuffer": INT}),
                "runs": closed(
                    {"maxConcurrentRuns": INT, "tagConcurrencyLimits": {"type": "array", "items": TAG_LIMIT}}
                ),
            }
        ),
        "postgresql": {
            "type": "object",
            "properties": {
                "enabled": BOOL,
                **dict.fromkeys(("postgresqlHost", "postgresqlUsername", "postgresqlDatabase"), STR),
                "service": {"type": "object", "properties": {"port": INT}},
            },
        },
    },
}


def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def test_k8s_values_match_the_chart_schema() -> None:
    jsonschema.validate(values(), SCHEMA)


def test_k8s_values_carry_the_limits_of_dagster_yaml() -> None:
    v = values()
    assert v["runLauncher"]["type"] == "K8sRunLauncher"
    env = {e["name"]: e.get("value") for e in v["dagster-user-deployments"]["deployments"][0]["env"]}
    assert env["IMGPIPE_EXECUTOR"] == "k8s"
    tags = [t["key"] for t in v["concurrency"]["runs"]["tagConcurrencyLimits"]]
    assert tags == ["imgpipe/owner", "imgpipe/request_id"]
    assert v["dagsterDaemon"]["runMonitoring"]["freeSlotsAfterRunEndSeconds"] > 0


def test_k8s_values_carry_telemetry_and_the_log_level_of_dagster_yaml() -> None:
    v, instance = values(), yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert v["telemetry"]["enabled"] is instance["telemetry"]["enabled"] is False
    assert v["pythonLogs"]["pythonLogLevel"] == instance["python_logs"]["python_log_level"] == "INFO"


def test_k8s_values_pin_every_image_tag() -> None:
    """Ours to the project version with the k8s extra (IMGPIPE_EXECUTOR=k8s needs dagster-k8s in the user
    image: ./Dockerfile --build-arg LOCK=requirements-k8s.lock), Dagster's to the dagster we lock."""
    v, project = values(), tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dagster = next(d.split("==")[1] for d in project["dependencies"] if d.startswith("dagster=="))
    ours = v["dagster-user-deployments"]["deployments"][0]["image"]
    assert ours["tag"] == f"{project['version']}-k8s"
    assert "\ndagster-k8s==" in (ROOT / "requirements-k8s.lock").read_text()
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert v[component]["image"]["tag"] == dagster, component
    assert "latest" not in VALUES.read_text()


@pytest.mark.parametrize(
    "path, bad",
    [
        (("concurrency", "pools"), {"defaultLimt": 8}),  # misspelt
        (("runLauncher",), {"type": "K8sLauncher", "config": {}}),
        (("dagsterDaemon", "runCoordinator", "config", "queuedRunCoordinator"), {"maxConcurrentRun": 3}),
        (("pythonLogs",), {"pythonLogLevel": "VERBOSE"}),
        (("telemetry",), {"enable": False}),
    ],
)
def test_the_schema_catches_mistakes(path: tuple[str, ...], bad: dict) -> None:
    v = values()
    node = v
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(v, SCHEMA)


# --- deploy/k8s/image-pipeline: the API and its pre-install/pre-upgrade migration Job ----------------------
CHART = ROOT / "deploy/k8s/image-pipeline"
LOOKUP = re.compile(r"\{\{-?\s*\.(Values|Release|Chart)\.([A-Za-z0-9_.]+)\s*-?\}\}")


def render(release: str = "imgpipe") -> list[dict]:
    """The chart's templates as `helm template` renders them. They hold plain lookups only (asserted here:
    any other action fails the test), for which helm's output is the looked-up value put in place."""
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    scopes = {
        "Values": yaml.safe_load((CHART / "values.yaml").read_text()),
        "Release": {"Name": release},
        "Chart": {"Name": meta["name"], "AppVersion": meta["appVersion"], "Version": meta["version"]},
    }

    def value(m: re.Match) -> str:
        node = scopes[m[1]]
        for part in m[2].split("."):
            node = node[part]  # a missing value fails here (helm would render "<no value>")
        assert not isinstance(node, dict | list), m[0]
        return str(node).lower() if isinstance(node, bool) else str(node)

    docs = []
    for template in sorted((CHART / "templates").glob("*.yaml")):
        text = LOOKUP.sub(value, template.read_text())
        assert "{{" not in text, f"{template.name}: only plain lookups keep this rendering faithful"
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def kinds() -> dict[str, dict]:
    return {d["kind"]: d for d in render()}


def dockerfile_user() -> int:
    return int(re.findall(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)[-1])


def test_the_migration_job_is_a_pre_install_and_pre_upgrade_hook_our_cli_accepts() -> None:
    job = kinds()["Job"]
    hooks = job["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in hooks["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["command"][1:])
    assert container["command"][0] == "imgpipe" and args.func.__name__ == "_migrate"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_user() != 0


def test_the_api_does_not_migrate_and_probes_liveness_and_readiness() -> None:
    deployment = kinds()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    env = {e["name"]: e["value"] for e in api["env"]}
    assert env["IMGPIPE_MIGRATE_ON_START"] == "false"
    paths = create_app().openapi()["paths"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz" in paths
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz" in paths
    assert api["readinessProbe"]["timeoutSeconds"] > Settings(_env_file=None).ready_timeout
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == dockerfile_user()
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert kinds()["Service"]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_chart_pins_the_api_image_to_the_project_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["appVersion"] == project["version"]
    images = {
        c["image"]
        for d in render()
        if "template" in d.get("spec", {})
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"ghcr.io/image-pipeline/image-pipeline:{project['version']}"}  # the API image: no executor
