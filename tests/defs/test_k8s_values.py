"""deploy/k8s/values.yaml is linted without `helm`: a JSON Schema of the parts of Dagster's Helm chart
(dagster-io/dagster helm/dagster: values.schema.json, generated from helm/dagster/schema) that the file
sets. Written here from the chart's key names and rules: where the chart forbids unknown keys
(`concurrency`, `runLauncher`, `dagsterDaemon`, the run coordinator), so does this schema, so a
misspelt key fails here instead of being silently ignored by `helm install`."""

import jsonschema
import pytest
import yaml

from tests.support.paths import ROOT

VALUES = ROOT / "deploy/k8s/values.yaml"


def closed(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


OBJ, INT, STR, BOOL = {"type": "object"}, {"type": "integer"}, {"type": "string"}, {"type": "boolean"}
NAMED = {"type": "array", "items": {"type": "object", "required": ["name"]}}
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
        "image": {"type": "object", "required": ["repository", "pullPolicy"]},
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


@pytest.mark.parametrize(
    "path, bad",
    [
        (("concurrency", "pools"), {"defaultLimt": 8}),  # misspelt
        (("runLauncher",), {"type": "K8sLauncher", "config": {}}),
        (("dagsterDaemon", "runCoordinator", "config", "queuedRunCoordinator"), {"maxConcurrentRun": 3}),
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
