"""Asset checks of `compressed_images`, evaluated for the partition (request) each run materialises.

They are declared on the asset (`check_specs`) and their results returned with its materialisation,
because each check is about one partition; the UI shows them on the asset and per run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:  # the domain loads when a step runs, not when the code location loads
    from image_pipeline.domain.request.context import RequestContext

ASSET = "compressed_images"
EVERY_URL_HAS_RESULT = "every_url_has_result"
OUTPUTS_DECODE_AS_JPEG = "outputs_decode_as_jpeg"
OUTPUTS_NOT_LARGER = "outputs_not_larger_than_inputs"
RENDITIONS_FOLLOW_PROFILE = "renditions_follow_profile"
ORIGINS_HONOUR_VALIDATORS = "origins_honour_validators"

check_specs = [
    dg.AssetCheckSpec(EVERY_URL_HAS_RESULT, asset=ASSET, description="Every input URL has a result: done or failed."),
    dg.AssetCheckSpec(
        OUTPUTS_DECODE_AS_JPEG,
        asset=ASSET,
        description="Stored outputs open and fully decode as JPEG (an even sample on large requests).",
    ),
    dg.AssetCheckSpec(
        OUTPUTS_NOT_LARGER,
        asset=ASSET,
        description="No output is larger than its input, unless the original was kept (and recorded as kept).",
    ),
    dg.AssetCheckSpec(
        RENDITIONS_FOLLOW_PROFILE,
        asset=ASSET,
        description="A profile's renditions are sRGB, follow their fit's size rule and are never upscaled "
        "unless asked (the same even sample).",
    ),
    dg.AssetCheckSpec(
        ORIGINS_HONOUR_VALIDATORS,
        asset=ASSET,
        description="Origins answer a conditional fetch of unchanged bytes with 304 (warns when one answers 200 "
        "with the same bytes: it ignores validators, and every sync downloads its images again).",
    ),
]


def _listing(items: list, limit: int = 20) -> str:
    return "\n".join(f"- {i}" for i in items[:limit]) + (
        f"\n- … {len(items) - limit} more" if len(items) > limit else ""
    )


def evaluate(ctx: RequestContext, request_id: str, decode_sample: int) -> list[dg.AssetCheckResult]:
    from image_pipeline.domain.db.requests import count_done, get_request, iter_result_facts
    from image_pipeline.domain.profiles import profile_from_json
    from image_pipeline.domain.request import checks as verify

    with ctx.sessions() as s:
        req = get_request(s, request_id)
        url_count = req.url_count if req else 0
        profile = profile_from_json(req.profile if req else None)
        # One streamed pass in index order: constant memory whatever the request's size.
        found = verify.scan(iter_result_facts(s, request_id), url_count, count_done(s, request_id), decode_sample)

    cov = found.coverage
    cov_meta = {"expected": dg.MetadataValue.int(cov.expected), "recorded": dg.MetadataValue.int(cov.recorded)}
    if cov.missing:
        cov_meta["missing_indices"] = dg.MetadataValue.md(_listing(cov.missing))

    dec, rules = verify.decode_outputs(ctx.store, found.sample, found.sizes.done, profile)
    dec_meta = {"done": dg.MetadataValue.int(dec.done), "checked": dg.MetadataValue.int(dec.checked)}
    if dec.bad:
        dec_meta["bad"] = dg.MetadataValue.md(_listing([f"#{i}: {why}" for i, why in dec.bad]))
    rule_meta = {
        "profile": dg.MetadataValue.text(profile.name if profile else "default"),
        "renditions_checked": dg.MetadataValue.int(rules.checked),
    }
    if rules.bad:
        rule_meta["bad"] = dg.MetadataValue.md(_listing([f"#{i}: {why}" for i, why in rules.bad]))

    size = found.sizes
    size_meta = {"done": dg.MetadataValue.int(size.done), "kept_original": dg.MetadataValue.int(size.kept_original)}
    if size.larger:
        size_meta["larger"] = dg.MetadataValue.md(_listing([f"#{i}: {a} -> {b} bytes" for i, a, b in size.larger]))

    val = found.validators
    val_meta = {
        "conditional_fetches": dg.MetadataValue.int(val.conditional),
        "validators_ignored": dg.MetadataValue.int(len(val.ignored)),
    }
    if val.ignored:
        val_meta["hosts"] = dg.MetadataValue.md(_listing([f"{h}: {n} URL(s)" for h, n in val.hosts().items()]))
        val_meta["urls"] = dg.MetadataValue.md(_listing([f"#{i}: {url}" for i, url in val.ignored]))

    return [
        dg.AssetCheckResult(check_name=EVERY_URL_HAS_RESULT, asset_key=ASSET, passed=cov.ok, metadata=cov_meta),
        dg.AssetCheckResult(check_name=OUTPUTS_DECODE_AS_JPEG, asset_key=ASSET, passed=dec.ok, metadata=dec_meta),
        dg.AssetCheckResult(
            check_name=OUTPUTS_NOT_LARGER,
            asset_key=ASSET,
            passed=size.ok,
            metadata=size_meta,
            severity=dg.AssetCheckSeverity.WARN,
        ),
        dg.AssetCheckResult(check_name=RENDITIONS_FOLLOW_PROFILE, asset_key=ASSET, passed=rules.ok, metadata=rule_meta),
        dg.AssetCheckResult(
            check_name=ORIGINS_HONOUR_VALIDATORS,
            asset_key=ASSET,
            passed=val.ok,
            metadata=val_meta,
            severity=dg.AssetCheckSeverity.WARN,
        ),
    ]
