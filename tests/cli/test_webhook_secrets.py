"""Issue 15 item 3: one signing secret for every tenant.

Before the fix every event of every tenant was signed with `IMGPIPE_WEBHOOK_SECRET`, so any tenant
could sign events that another tenant's receiver accepts. Now each key made with `imgpipe keys create`
has its tenant's own secret (shown once), rotatable with an overlap window (several signatures in one
`webhook-signature` header), and the global secret signs only for env-list keys. Every secret is
checked at start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from api.auth import owner_of
from image_pipeline.domain.signing_secrets import new_secret
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import run_partition
from tests.support.services import WEBHOOK_SECRET


def imgpipe(settings, *args: str, cwd, **env_extra: str) -> subprocess.CompletedProcess:
    """The real `imgpipe` command line against the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPIPE_")}
    env.update(IMGPIPE_DATABASE_URL=settings.resolved_database_url, **env_extra)
    exe = str(Path(sys.executable).parent / "imgpipe")
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def accepts(secret: str, delivery) -> bool:
    try:
        Webhook(secret).verify(delivery.body, delivery.headers)
        return True
    except WebhookVerificationError:
        return False


def test_each_tenant_signs_with_its_own_secret_and_rotation_overlaps(
    settings, submit, resources, instance, image_server, webhook_receiver, tmp_path
) -> None:
    """Fails before the fix (`keys create` made no secret and every event was signed with the global
    secret, which the other tenant also holds); passes after."""
    made = [imgpipe(settings, "keys", "create", name, "--json", cwd=tmp_path) for name in ("shop a", "shop b")]
    assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
    a, b = (json.loads(m.stdout) for m in made)
    assert a["webhook_secret"].startswith("whsec_") and a["webhook_secret"] != b["webhook_secret"]
    plain = imgpipe(settings, "keys", "create", "shop c", cwd=tmp_path)  # without --json: secret on stderr
    assert plain.stdout.strip().startswith("imgp_") and "whsec_" in plain.stderr and "whsec_" not in plain.stdout

    url = image_server.add("/s/a.jpg", make_image(seed=4))

    def event_for(owner: str):
        before = len(webhook_receiver.deliveries)
        rid = submit(csv_bytes([("1", "Shoe", [url])]), webhook_url=webhook_receiver.url, owner=owner)
        assert run_partition(rid, resources, instance).success
        return webhook_receiver.wait_for(before + 1)[before]

    # Tenant A's event: only A's secret verifies it; neither B's nor the global secret does.
    ev = event_for(a["tenant"])
    assert a["tenant"] == owner_of(a["key"])
    assert accepts(a["webhook_secret"], ev)
    assert not accepts(b["webhook_secret"], ev) and not accepts(WEBHOOK_SECRET, ev)
    # An env-list key (single-tenant set-up) is signed with the global secret.
    assert accepts(WEBHOOK_SECRET, event_for(owner_of("test-key-1")))

    # Rotation with an overlap: both secrets sign (two signatures in one header), receivers switch at leisure.
    rotated = imgpipe(settings, "keys", "rotate-secret", str(a["id"]), "--overlap-hours", "1", "--json", cwd=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)["webhook_secret"]
    ev = event_for(a["tenant"])
    assert len(ev.headers["webhook-signature"].split(" ")) == 2
    assert accepts(new, ev) and accepts(a["webhook_secret"], ev) and not accepts(b["webhook_secret"], ev)
    # Overlap 0: the secrets before it stop signing at once.
    last = imgpipe(settings, "keys", "rotate-secret", str(a["id"]), "--overlap-hours", "0", "--json", cwd=tmp_path)
    newest = json.loads(last.stdout)["webhook_secret"]
    ev = event_for(a["tenant"])
    assert accepts(newest, ev) and not accepts(new, ev) and not accepts(a["webhook_secret"], ev)

    listed = imgpipe(settings, "keys", "list", cwd=tmp_path)
    assert "own(1)" in listed.stdout and newest not in listed.stdout


@pytest.mark.parametrize(
    "env, refused",
    [
        (
            {"IMGPIPE_WEBHOOK_SECRET": "whsec_Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2U="},
            "placeholder",
        ),  # compose's old default
        ({"IMGPIPE_WEBHOOK_SECRET": "change-me"}, "whsec_"),
        ({"IMGPIPE_WEBHOOK_SECRET": "whsec_dGVzdA=="}, "at least 24"),
        ({"IMGPIPE_WEBHOOK_SECRET": "whsec_not base64!"}, "base64"),
        ({"IMGPIPE_WEBHOOK_SECRET": "whsec_YmVuY2hzY2FsZWJlbmNoc2NhbGViZW5jaHNjYWxl"}, "not random"),
        ({"IMGPIPE_API_KEYS": "change-me"}, "placeholder"),  # compose's old default key
    ],
)
def test_a_weak_secret_is_refused_at_start_up(settings, tmp_path, env, refused) -> None:
    """Fails before the fix (any value was taken, including compose's default secret and key); passes after."""
    r = imgpipe(settings, "keys", "list", cwd=tmp_path, **env)
    assert r.returncode != 0 and refused in r.stderr, r.stderr
    assert all(value not in r.stderr for value in env.values())  # the refusal never echoes the value


def test_a_generated_secret_is_accepted_at_start_up(settings, tmp_path) -> None:
    r = imgpipe(settings, "keys", "list", cwd=tmp_path, IMGPIPE_WEBHOOK_SECRET=new_secret())
    assert r.returncode == 0, r.stderr
