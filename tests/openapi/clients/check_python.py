"""A client generated from docs/openapi.json by openapi-python-client, against a demo server.

Fetches a token with the generated `token` call, then the last ready week of every one of the
21 endpoints (in chunks of each endpoint's span) with the generated calls, and compares each
parsed answer — models built from the description's schemas, back to a dict — with the raw
answer fetched beside it. A field the description misses, types wrongly, or a row shape that
does not parse fails here.

    python check_python.py BASE_URL APPID SECRET LAST_READY_DAY
"""

from __future__ import annotations

import datetime
import importlib
import json
import pkgutil
import sys
import urllib.request

import datacube_client.api
from datacube_client import Client
from datacube_client.api.tokens import token as token_api
from datacube_client.models import AccessToken, DatacubeError, DatacubeRequest
from datacube_client.models.token_grant_type import TokenGrantType

base, appid, secret, last_ready = sys.argv[1:5]
last = datetime.date.fromisoformat(last_ready)
spec = json.load(urllib.request.urlopen(f"{base}/openapi.json"))

client = Client(base_url=base, raise_on_unexpected_status=True)
token = token_api.sync(
    client=client, grant_type=TokenGrantType.CLIENT_CREDENTIAL, appid=appid, secret=secret
)
assert isinstance(token, AccessToken), token
assert token.expires_in == 7200, token
wrong = token_api.sync(
    client=client, grant_type=TokenGrantType.CLIENT_CREDENTIAL, appid=appid, secret="x" * 32
)
assert wrong.errcode == 40125, wrong


def operation_module(operation_id: str):
    """The generated module of an operation, in whichever tag's package it landed."""
    for package in pkgutil.iter_modules(datacube_client.api.__path__):
        try:
            return importlib.import_module(f"datacube_client.api.{package.name}.{operation_id}")
        except ModuleNotFoundError:
            continue
    raise AssertionError(f"no generated module for {operation_id}")


def raw(name: str, begin: datetime.date, end: datetime.date) -> dict:
    body = json.dumps({"begin_date": begin.isoformat(), "end_date": end.isoformat()}).encode()
    request = urllib.request.Request(
        f"{base}/datacube/{name}?access_token={token.access_token}",
        data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def span_of(path: str) -> int:
    """The span the description gives for an endpoint (`at most N days`, `one day`)."""
    text = spec["paths"][path]["post"]["description"]
    if "at most one day" in text:
        return 1
    return int(text.split("Span: at most ")[1].split(" days")[0])


endpoints = sorted(p.removeprefix("/datacube/") for p in spec["paths"] if p.startswith("/datacube/"))
assert len(endpoints) == 21, endpoints
rows_seen = 0
for name in endpoints:
    module = operation_module(name)
    span = span_of(f"/datacube/{name}")
    begin = last - datetime.timedelta(days=6)
    while begin <= last:
        end = min(last, begin + datetime.timedelta(days=span - 1))
        parsed = module.sync(
            client=client, access_token=token.access_token, body=DatacubeRequest(begin, end)
        )
        expected = raw(name, begin, end)
        assert not isinstance(parsed, DatacubeError), (name, begin, end, parsed)
        assert parsed.to_dict() == expected, (name, begin, end, parsed.to_dict(), expected)
        rows_seen += len(expected["list"])
        begin = end + datetime.timedelta(days=1)
    # The answer of a malformed body parses as the error the description gives.
    error = module.sync(
        client=client,
        access_token=token.access_token,
        body=DatacubeRequest(last, last - datetime.timedelta(days=1)),
    )
    assert isinstance(error, DatacubeError) and error.errcode.value == 61501, (name, error)

assert rows_seen > 500, f"only {rows_seen} rows: the demo account should have a busy week"
print(f"python client: token, 21 endpoints, {rows_seen} rows parsed and equal to the raw answers")
