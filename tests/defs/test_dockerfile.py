"""./Dockerfile as written: a base image and a uv pinned by version (the same uv the Makefile bootstraps),
the lock it installs chosen by LOCK (the API image: requirements.lock, no executor), and a non-root USER
that owns only DAGSTER_HOME and IMGPIPE_DATA_DIR. Read as instructions (docker is not available to build it here)."""

from __future__ import annotations

import re
import tomllib

from tests.support.paths import ROOT

TEXT = (ROOT / "Dockerfile").read_text()
# Instructions with their continuation lines joined, comments dropped: [(INSTRUCTION, arguments)].
STEPS = [
    (m[1].upper(), m[2])
    for m in re.finditer(
        r"^(\w+)\s+(.*?)(?<!\\)$", re.sub(r"\\\n\s*", " ", re.sub(r"^#.*\n", "", TEXT, flags=re.M)), re.M
    )
]


def args() -> dict[str, str]:
    return dict(a.split("=", 1) for op, a in STEPS if op == "ARG" and "=" in a)


def test_base_image_is_pinned_to_the_python_the_project_requires() -> None:
    (base,) = [a for op, a in STEPS if op == "FROM"]
    image, tag = base.split(":")
    assert image == "python" and re.fullmatch(r"3\.11\.\d+-slim-\w+", tag), base
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"].startswith(">=3.11")


def test_uv_is_pinned_to_the_makefiles_version() -> None:
    version = args()["UV_VERSION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert ("RUN", 'pip install "uv==${UV_VERSION}"') in STEPS
    assert re.search(rf"^UV_VERSION := {re.escape(version)}$", (ROOT / "Makefile").read_text(), re.M)


def test_the_default_lock_is_the_api_image_without_executors() -> None:
    assert args()["LOCK"] == "requirements.lock"
    assert ("COPY", "${LOCK} ./requirements.lock") in STEPS
    assert any(op == "RUN" and "--require-hashes requirements.lock" in a for op, a in STEPS)


def test_it_runs_as_a_non_root_user_that_owns_only_its_state_directories() -> None:
    users = [a for op, a in STEPS if op == "USER"]
    assert users, "no USER: the container would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0  # numeric: runAsNonRoot can check it
    last_user = max(i for i, (op, _) in enumerate(STEPS) if op == "USER")
    assert [op for op, _ in STEPS[last_user + 1 :]] == ["EXPOSE", "CMD"]  # nothing after it runs as root again
    setup = next(a for op, a in STEPS if op == "RUN" and "useradd" in a)
    assert f"--uid {uid}" in setup and f"chown -R {uid}:{gid} $DAGSTER_HOME $IMGPIPE_DATA_DIR" in setup
    assert "chown" not in " ".join(a for op, a in STEPS if op == "RUN" and "/app" in a)  # the code stays root's
