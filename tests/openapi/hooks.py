"""datacube's own schemathesis checks and hooks (SCHEMATHESIS_HOOKS=hooks, from this directory).

WeChat answers every error as HTTP 200 with an `errcode`, so the checks that judge a route by
its HTTP status (negative_data_rejection, unsupported_method) cannot judge WeChat's routes:
schemathesis.toml turns them off there, and `wechat_errcode` below judges them by their errcode
instead:

- every answer is HTTP 200 with a JSON object; `-1` (WeChat's "system error, retry") is a
  failure whatever was asked;
- a well-formed request (positive mode) never gets a format error (61500, 44002, 47001) nor a
  missing-parameter one (41001, 41002, 41004, 41018), nor 40002 (its grant_type is right);
- a malformed one (negative mode) is refused: a non-zero errcode among those its operation
  documents — and, on a datacube endpoint asked with a good token, exactly 61500 or 44002;
- a body sent with another Content-Type is read as JSON all the same (as WeChat does): such a
  probe is judged for server errors only, as schemathesis judges it.

`map_case` gives the datacube endpoints a real access token (a stable token of the demo
account, DATACUBE_APPID and DATACUBE_SECRET) wherever the query was generated positive, so
that their bodies are judged, not only their tokens.
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.request

import schemathesis
from schemathesis import GenerationMode
from schemathesis.generation.meta import CONTENT_TYPE_PROBES

BASE = os.environ["DATACUBE_URL"].rstrip("/")
APPID = os.environ["DATACUBE_APPID"]
SECRET = os.environ["DATACUBE_SECRET"]

WECHAT = re.compile(r"^/(datacube|cgi-bin)/")
DATACUBE = re.compile(r"^/datacube/")
# The admin API's read of an account's statistics answers as the datacube endpoints do.
ADMIN_DATACUBE = re.compile(r"^/admin/datacube/")

# A body of events is text, one JSON object per line: sent as it is generated.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
FORMAT_ERRORS = {61500, 44002, 47001}
MISSING = {41001, 41002, 41004, 41018}

_lock = threading.Lock()
_token: str | None = None


def token() -> str:
    """A stable token of the demo account (the same one while it lives)."""
    global _token
    with _lock:
        if _token is None:
            body = json.dumps(
                {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
            ).encode()
            req = urllib.request.Request(
                f"{BASE}/cgi-bin/stable_token",
                data=body,
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                answer = json.load(resp)
            assert "access_token" in answer, answer
            _token = answer["access_token"]
        return _token


def _mode(case, location: str):
    meta = case.meta
    if meta is None:
        return GenerationMode.POSITIVE
    for where, info in meta.components.items():
        if getattr(where, "value", where) == location:
            return info.mode
    return meta.generation.mode


@schemathesis.hook
def map_case(ctx, case):
    if DATACUBE.match(case.operation.path) and _mode(case, "query") == GenerationMode.POSITIVE:
        query = dict(case.query or {})
        query["access_token"] = token()
        case.query = query
    return case


def _documented(case) -> set[int]:
    """The errcodes the operation's description lists for its HTTP 200 answer."""
    op = case.operation.definition.raw
    named = case.operation.schema.raw_schema["components"]["schemas"]
    codes: set[int] = set()

    def walk(schema: dict, depth: int = 0) -> None:
        if depth > 3:
            return
        ref = schema.get("$ref")
        if ref:
            walk(named.get(ref.rsplit("/", 1)[-1], {}), depth + 1)
            return
        codes.update(schema.get("properties", {}).get("errcode", {}).get("enum", []))
        for item in schema.get("oneOf", []) + schema.get("anyOf", []):
            walk(item, depth + 1)

    walk(op["responses"]["200"]["content"]["application/json"]["schema"])
    return codes


@schemathesis.check
def wechat_errcode(ctx, response, case):
    """WeChat's routes judged by their errcode (see the module's docs)."""
    admin = ADMIN_DATACUBE.match(case.operation.path)
    if not (WECHAT.match(case.operation.path) or admin):
        return None
    if admin and response.status_code != 200:
        # The admin API's own refusals (no such account or endpoint): plain HTTP, judged by
        # the other checks.
        return None
    if response.status_code != 200:
        raise AssertionError(f"WeChat answers HTTP 200, this was {response.status_code}")
    try:
        body = json.loads(response.content)
    except ValueError as e:
        raise AssertionError(f"not JSON: {e}") from None
    if not isinstance(body, dict):
        raise AssertionError(f"not a JSON object: {body!r}")
    code = body.get("errcode", 0)
    if code == -1:
        raise AssertionError(f"-1 system error: {body.get('errmsg')}")
    mode = case.meta.generation.mode if case.meta else GenerationMode.POSITIVE
    if getattr(case.meta.phase.data, "scenario", None) in CONTENT_TYPE_PROBES if case.meta else False:
        # WeChat reads a body as JSON whatever its Content-Type says (SDKs send several): a
        # probe of the Content-Type alone is judged by the rest of the request, as schemathesis
        # judges these probes — only a server error is a finding.
        return None
    if mode == GenerationMode.POSITIVE:
        if code in FORMAT_ERRORS | MISSING or code == 40002:
            raise AssertionError(f"a well-formed request was refused as malformed: {body}")
        return None
    # Negative: refused, with a code the operation documents.
    if code == 0:
        # A body, query or header the description calls malformed was taken as good.
        raise AssertionError(f"a malformed request was answered as good: {str(body)[:300]}")
    documented = _documented(case)
    if code not in documented:
        raise AssertionError(f"errcode {code} is not among those documented: {sorted(documented)}")
    if (
        (DATACUBE.match(case.operation.path) or admin)
        and _mode(case, "query") == GenerationMode.POSITIVE
        and _mode(case, "body") == GenerationMode.NEGATIVE
        and code not in (61500, 44002)
    ):
        raise AssertionError(f"a malformed datacube body got {code}, not 61500 or 44002: {body}")
    return None
