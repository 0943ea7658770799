"""pyproject's extras and groups, and the hashed locks `make lock` makes from them: the API image carries
no executor (no Celery), an executor's image carries the package IMGPIPE_EXECUTOR needs, bench-only
packages are in no image, and the Redis client stays inside the versions `limits` supports."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import requires

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from image_pipeline.defs.executors import _PACKAGES
from tests.support.paths import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The extra an IMGPIPE_EXECUTOR value needs (multiprocess needs only S3 step outputs, from dagster-aws).
EXTRA_OF = {"celery": "celery", "k8s": "k8s", "ecs": "aws", "multiprocess": "aws"}
IMAGE_LOCKS = ["requirements.lock", "requirements-aws.lock", "requirements-celery.lock", "requirements-k8s.lock"]


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return {m[1].lower(): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements}


def test_the_api_image_lock_carries_no_executor() -> None:
    api = pins("requirements.lock")
    for package in ("dagster-celery", "celery", "kombu", "dagster-k8s", "kubernetes", "dagster-aws"):
        assert package not in api, package
    assert {"dagster", "dagster-webserver", "dagster-postgres", "fastapi", "boto3"} <= set(api)


@pytest.mark.parametrize("executor, extra", EXTRA_OF.items())
def test_each_executor_has_an_extra_and_a_lock_with_its_package(executor: str, extra: str) -> None:
    declared = names(PYPROJECT["project"]["optional-dependencies"][extra])
    assert "dagster-aws" in declared  # S3PickleIOManager: every executor but in_process shares step data via S3
    needed = _PACKAGES.get(executor, "dagster-aws")
    assert needed in declared
    locked = pins(f"requirements-{extra}.lock")
    assert needed in locked and "dagster-aws" in locked
    dagster = locked["dagster"]  # the integration libraries are released in lock-step with dagster
    assert locked[needed] == f"0.{int(dagster.split('.')[1]) + 16}.{dagster.split('.')[2]}"


def test_every_lock_pins_shared_packages_at_one_version() -> None:
    seen: dict[str, dict[str, str]] = {}
    for lock in [*IMAGE_LOCKS, "requirements-dev.lock"]:
        for name, version in pins(lock).items():
            seen.setdefault(name, {})[lock] = version
    assert {n: v for n, v in seen.items() if len(set(v.values())) > 1} == {}


def test_bench_only_packages_are_in_their_own_group_and_no_image() -> None:
    groups = PYPROJECT["dependency-groups"]
    bench = names(groups["bench"])
    assert bench == {"matplotlib", "pyinstrument"}
    assert not bench & names([r for r in groups["dev"] if isinstance(r, str)])
    assert not bench & names(PYPROJECT["project"]["dependencies"])
    for lock in IMAGE_LOCKS:
        assert not bench & set(pins(lock)), lock
    assert bench <= set(pins("requirements-dev.lock"))  # make bench works after make install


def test_limits_redis_extra_bounds_the_locked_redis_client() -> None:
    """`limits[redis]` hands the resolver limits' supported redis-py range; without the extra the lock
    had redis 8.1, outside it."""
    limits = next(Requirement(r) for r in PYPROJECT["project"]["dependencies"] if r.startswith("limits"))
    assert "redis" in limits.extras
    bound = next(
        req.specifier
        for req in map(Requirement, requires("limits") or [])
        if req.name == "redis" and req.marker is not None and req.marker.evaluate({"extra": "redis"})
    )
    for lock in [*IMAGE_LOCKS, "requirements-dev.lock"]:
        assert Version(pins(lock)["redis"]) in bound, (lock, pins(lock)["redis"], str(bound))
