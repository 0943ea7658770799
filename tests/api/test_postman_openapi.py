"""The Postman collection matches the app's OpenAPI routes (both ways) and works when run; every route
documents its error model and has examples."""

import json
import re

from api.main import create_app
from image_pipeline.defs.resources import build_resources
from image_pipeline.domain.request.chunks import compress_request
from image_pipeline.domain.request.finish import write_output
from image_pipeline.domain.request.validate import validate_request
from tests.support.inputs import csv_bytes, make_image
from tests.support.paths import ROOT

COLLECTION = ROOT / "postman" / "image-pipeline.postman_collection.json"


def collection() -> dict:
    return json.loads(COLLECTION.read_text())


def collection_routes(col: dict) -> dict[tuple[str, str], dict]:
    routes = {}
    for item in col["item"]:
        url = item["request"]["url"]
        assert url["host"] == ["{{baseUrl}}"] and url["raw"].startswith("{{baseUrl}}/"), item["name"]
        path = "/" + "/".join("{}" if re.fullmatch(r"\{\{\w+\}\}", p) else p for p in url["path"])
        routes[(item["request"]["method"], path)] = item
    return routes


def openapi_routes(schema: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path)) for path, ops in schema["paths"].items() for method in ops
    }


def test_collection_and_openapi_have_the_same_routes() -> None:
    col = collection()
    assert col["info"]["schema"].endswith("/v2.1.0/collection.json")
    assert {v["key"] for v in col["variable"]} >= {"baseUrl", "apiKey"}
    assert col["auth"]["bearer"][0]["value"] == "{{apiKey}}"
    in_postman = set(collection_routes(col))
    in_openapi = openapi_routes(create_app().openapi())
    assert in_postman - in_openapi == set(), "collection has routes the API no longer serves"
    assert in_openapi - in_postman == set(), "API routes missing from the Postman collection"


def test_every_route_documents_errors_and_examples() -> None:
    schema = create_app().openapi()
    components = schema["components"]["schemas"]
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary") and op.get("description"), where
            errors = {code: r for code, r in op["responses"].items() if int(code) >= 400}
            if "401" in errors:
                assert op["security"] == [{"bearerApiKey": []}], where
            # Liveness has no error answer: a process that can answer says 200, one that cannot says nothing.
            assert errors or path == "/healthz", f"{where} documents no error response"
            for code, r in errors.items():
                ref = r["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                assert ref in ("ErrorResponse", "DbHealth", "Readiness"), f"{where} {code} -> {ref}"
                assert r.get("description"), f"{where} {code}"
            ok = next(r for code, r in op["responses"].items() if code.startswith("2"))
            for ctype, content in ok.get("content", {}).items():  # a 204 has none
                if ctype == "application/json":
                    ref = content["schema"]["$ref"].rsplit("/", 1)[1]
                    assert components[ref].get("examples"), f"{where}: {ref} has no example"
                elif ctype == "text/csv":
                    assert content.get("example"), where
    assert components["ErrorResponse"]["examples"]
    assert schema["components"]["securitySchemes"]["bearerApiKey"]["scheme"] == "bearer"
    secured = {p for p, ops in schema["paths"].items() for op in ops.values() if "security" in op}
    assert "/api/upload" in secured and not secured & {"/api/check_db_connection", "/healthz", "/readyz"}


def test_collection_runs_against_the_api(client, settings, image_server) -> None:
    """Each request of the collection, with its variables filled in, as a Postman run would send it."""
    col = collection()
    variables = {v["key"]: v["value"] for v in col["variable"]} | {"apiKey": "test-key-1"}
    routes = {item["name"]: item for item in col["item"]}
    urls = [image_server.add(f"/pm/{i}.jpg", make_image(seed=i)) for i in range(2)]
    upload_file = csv_bytes([("1", "SKU1", urls)])

    def send(name: str, **kwargs) -> object:
        req = routes[name]["request"]
        raw = req["url"]["raw"]
        for k, v in variables.items():
            raw = raw.replace("{{" + k + "}}", v)
        path = raw.replace(variables["baseUrl"], "", 1)
        headers = {}
        if req.get("auth", col["auth"])["type"] == "bearer":
            headers["Authorization"] = f"Bearer {variables['apiKey']}"
        return client.request(req["method"], path, headers=headers, **kwargs)

    form = routes["Upload a CSV"]["request"]["body"]["formdata"]
    assert [f["key"] for f in form] == ["file", "webhook_url", "profile", "options"] and (
        ROOT / form[0]["src"]
    ).is_file()
    r = send("Upload a CSV", files={"file": ("products.csv", upload_file, "text/csv")})
    assert r.status_code == 202, r.text
    variables["requestId"] = r.json()["request_id"]  # what the item's test script stores
    variables["imageKey"] = f"requests/{variables['requestId']}/images/0000000.jpg"
    assert send("Output CSV").status_code == 409

    ctx = build_resources(settings)["pipeline"].context()
    for step in (validate_request, compress_request, write_output):
        step(ctx, variables["requestId"])

    assert send("Status and progress").json()["status"] == "completed"
    assert send("Per-URL results").json()["products"][0]["images"][1]["status"] == "done"
    assert send("Output CSV").text.startswith("S.No.,Product Name,Input Image Urls,Output Image Urls")
    assert variables["requestId"] in [x["request_id"] for x in send("Recent requests").json()["requests"]]
    image = send("Output image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert send("Database health").json() == {"db_status": "connected"}
    assert send("Liveness").json() == {"status": "ok"}
    assert send("Readiness").json()["status"] == "ready"
    assert send("Webhook deliveries").json() == {
        "request_id": variables["requestId"],
        "webhook_url": None,
        "deliveries": [],
    }
    assert send("Replay webhook").status_code == 409  # no webhook_url on this upload
    assert send("Cancel a request").status_code == 409  # it has finished
