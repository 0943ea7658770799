import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, Request, Response, UploadFile, status
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from api import idempotency
from api.deps import LauncherDep, SessionDep, SettingsDep, StoreDep
from api.errors import ApiError
from api.middleware.upload_gate import upload_owner
from api.schemas.errors import ErrorResponse
from api.schemas.requests import UploadAccepted
from image_pipeline.domain.catalog.csv_input import CsvLimits, ascii_url, parse_csv, url_problem
from image_pipeline.domain.images.url_policy import FetchError, FetchPolicy, Resolver, check_url
from image_pipeline.domain.profiles import Profile, ProfileError, profile_error_items, resolve, tenant_profiles
from image_pipeline.domain.request.accept import Upload, accept, discard, new_request_id
from image_pipeline.domain.runs import uses_fanout
from image_pipeline.domain.telemetry import tracing
from image_pipeline.domain.telemetry.logs import bind

router = APIRouter(tags=["requests"])
log = logging.getLogger("imgpipe.api.upload")

_STATUS_FOR_KIND = {"encoding": 400, "invalid": 422, "too_many_rows": 422}


async def _check_webhook(url: str, policy: FetchPolicy, resolve: Resolver) -> str | None:
    """Why `url` cannot receive webhooks (same SSRF rules as downloads, https unless allowed), or None.
    `url` is in ASCII form (`ascii_url`): a host name that cannot be encoded was refused by `url_problem`."""
    try:
        async with asyncio.timeout(policy.connect_timeout):  # a slow DNS answer must not hold the upload
            await check_url(url, policy, resolve, require_https=True)
    except FetchError as exc:
        return str(exc)
    except TimeoutError:
        return f"the host did not resolve within {policy.connect_timeout:g} s"
    except ValueError as exc:  # UnicodeError included: a URL or host name no resolver can take
        return f"malformed URL: {type(exc).__name__}"
    return None


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def _force(value: str | None) -> bool:
    """`force`: fetch and encode every URL, whatever the tenant's sync memory holds (docs/sync.md)."""
    text = (value or "").strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ApiError(422, "force refused", [{"row": 0, "column": "force", "message": "must be true or false"}])


def _resolve_profile(session, owner: str, name: str | None, options: str | None, settings) -> Profile | None:
    """The upload's output profile, validated here (field-level 422s) and frozen into the request."""
    try:
        return resolve(
            (name or "").strip() or None,
            (options or "").strip() or None,
            tenant_profiles=tenant_profiles(session, owner),
            seed_quality=settings.jpeg_quality,
            max_dimension=settings.max_dimension,
        )
    except ProfileError as exc:
        raise ApiError(422, f"profile refused: {exc}", profile_error_items(exc)) from None


@router.post(
    "/upload",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    responses={
        400: {"model": ErrorResponse, "description": "not UTF-8 / unreadable"},
        401: {"model": ErrorResponse, "description": "missing or invalid bearer API key"},
        413: {"model": ErrorResponse, "description": "file too large"},
        415: {"model": ErrorResponse, "description": "not a CSV text file"},
        422: {
            "model": ErrorResponse,
            "description": "CSV or webhook_url invalid (every problem with its row/column), or Idempotency-Key reused",
        },
        429: {"model": ErrorResponse, "description": "upload rate limit of this key reached (see Retry-After)"},
    },
)
async def upload(
    request: Request,
    response: Response,
    owner: Annotated[str, Depends(upload_owner)],
    settings: SettingsDep,
    session: SessionDep,
    store: StoreDep,
    launcher: LauncherDep,
    background: BackgroundTasks,
    file: Annotated[UploadFile, File(description="CSV: S.No.,Product Name,Input Image Urls")],
    webhook_url: Annotated[str | None, Form(description="Where the final, signed event is POSTed")] = None,
    profile: Annotated[
        str | None, Form(description="Output profile: a built-in (catalogue, web, square) or one of this key's")
    ] = None,
    options: Annotated[
        str | None, Form(description='JSON overrides of the profile: {"renditions": [{"name": ..., ...}]}')
    ] = None,
    force: Annotated[
        str | None,
        Form(description="true: fetch and encode every URL again, ignoring what earlier uploads of this key made"),
    ] = None,
) -> UploadAccepted:
    """Validate a CSV of product image URLs and queue it for processing (202); nothing is stored if refused.

    With an `Idempotency-Key` header, repeating the same upload returns the original request (see api/idempotency.py).
    """
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ApiError(
            413,
            f"upload is larger than {settings.max_upload_bytes:,} bytes",
            [{"row": 0, "column": "file", "message": "the limit is IMGPIPE_MAX_UPLOAD_BYTES"}],
        )
    webhook_url = (webhook_url or "").strip() or None
    forced = _force(force)
    chosen = await run_in_threadpool(_resolve_profile, session, owner, profile, options, settings)
    idem_key = idempotency.key_of(request)
    digest = (
        idempotency.fingerprint(data, webhook_url, chosen.fingerprint() if chosen else None, forced)
        if idem_key
        else None
    )
    if idem_key and (previous := idempotency.previous_answer(session, owner, idem_key, digest, settings, response)):
        return previous
    parsed = parse_csv(data, CsvLimits.from_settings(settings))
    if not parsed.ok:
        binary = parsed.errors[0].message.startswith("file is binary")
        code = 415 if binary else _STATUS_FOR_KIND[parsed.kind]
        more = " (more problems not shown)" if parsed.truncated else ""
        raise ApiError(
            code, f"CSV refused: {len(parsed.errors)} problem(s){more}", [e.as_dict() for e in parsed.errors]
        )
    if webhook_url:
        # Stored (and contacted) in ASCII form: DNS, the Host header and SNI take the IDNA 2008 A-labels.
        problem = url_problem(webhook_url)
        if not problem:
            webhook_url = ascii_url(webhook_url)
            resolve = request.app.state.webhook_resolver.for_owner(owner)  # bounded per key: see api/webhook_dns.py
            problem = await _check_webhook(webhook_url, FetchPolicy.from_settings(settings), resolve)
        if problem:
            raise ApiError(422, "webhook_url refused", [{"row": 0, "column": "webhook_url", "message": problem}])

    request_id = new_request_id()
    bind(request_id=request_id)
    tracing.tag_current(request_id=request_id)
    accepted = Upload(
        owner=owner,
        data=data,
        rows=len(parsed.rows),
        urls=parsed.url_count,
        filename=file.filename,
        webhook_url=webhook_url,
        idempotency_key=idem_key,
        request_hash=digest,
        profile=chosen.canonical_json() if chosen else None,
        force=forced,
    )
    try:
        # In the threadpool: the event loop keeps reading other uploads while this one waits on I/O.
        await run_in_threadpool(accept, store, session, request_id, accepted)
    except IntegrityError:
        if not idem_key:
            raise
        # A concurrent upload with the same key won the insert: answer with its request.
        session.rollback()
        discard(store, request_id)
        previous = idempotency.previous_answer(session, owner, idem_key, digest, settings, response)
        if previous is None:
            raise
        return previous
    # After the 202 is sent; a failure here only means the sensor launches it. Large requests on a
    # scale-out executor are left to the sensor, which sends them to the fan-out job.
    log.info("upload accepted: %d products, %d images", len(parsed.rows), parsed.url_count)
    if launcher is not None and not uses_fanout(settings, parsed.url_count):
        background.add_task(launcher.claim_and_launch, request_id, owner, len(parsed.rows), parsed.url_count)
    return UploadAccepted(
        request_id=request_id,
        message=f"accepted: {len(parsed.rows)} products, {parsed.url_count} images",
        status_url=f"{settings.resolved_api_base_url}/api/status/{request_id}",
    )
