"""The local stack's SigV4 verifier accepts what botocore signs with the platform credential, nothing else."""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from chalicelib.local.credentials import Credentials
from chalicelib.local.sigv4 import SigV4Verifier

PLATFORM = Credentials.generate()
HOST = "127.0.0.1:4566"


def _boto(creds: Credentials) -> BotoCredentials:
    return BotoCredentials(creds.access_key_id, creds.secret_access_key)


def _signed(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    service: str = "dynamodb",
    creds: Credentials = PLATFORM,
    signer: type[SigV4Auth] = SigV4Auth,
) -> tuple[str, str, dict[str, str], bytes]:
    """What a server receives for a request botocore signed: method, request target, headers, body."""
    request = AWSRequest(method=method, url=f"http://{HOST}{path}", data=body, headers=headers or {})
    if issubclass(signer, SigV4QueryAuth):
        signer(_boto(creds), service, "us-east-1", expires=300).add_auth(request)  # type: ignore[call-arg]
    else:
        signer(_boto(creds), service, "us-east-1").add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    received = {k.lower(): str(v) for k, v in prepared.headers.items()}
    received["host"] = HOST
    return method, target, received, body


def _verify(request: tuple[str, str, dict[str, str], bytes], verifier: SigV4Verifier | None = None) -> str | None:
    method, target, headers, body = request
    refusal = (verifier or SigV4Verifier(PLATFORM)).verify(method, target, headers, lambda: body)
    return refusal.code if refusal else None


JSON_HEADERS = {"X-Amz-Target": "DynamoDB_20120810.Scan", "Content-Type": "application/x-amz-json-1.0"}

ACCEPTED: list[tuple[str, Callable[[], tuple[str, str, dict[str, str], bytes]]]] = [
    ("dynamodb json", lambda: _signed("POST", "/", b'{"TableName": "t"}', JSON_HEADERS)),
    ("empty body", lambda: _signed("GET", "/", b"")),
    ("query string", lambda: _signed("GET", "/?b=2&a=1&a=0&empty=&k%20ey=v%2Fal", service="emr")),
    ("encoded path", lambda: _signed("GET", "/@connections/abc%3D%3D", service="execute-api")),
    ("s3 object", lambda: _signed("PUT", "/bucket/a%20b/%C3%BC.txt", b"x" * 5000, service="s3", signer=S3SigV4Auth)),
    ("s3 list", lambda: _signed("GET", "/bucket?list-type=2&prefix=uploads%2F", service="s3", signer=S3SigV4Auth)),
    ("s3 presigned", lambda: _signed("GET", "/bucket/k%2By", service="s3", signer=S3SigV4QueryAuth)),
    ("presigned", lambda: _signed("GET", "/?Action=List", service="sts", signer=SigV4QueryAuth)),
]


@pytest.mark.parametrize("case", [c for _, c in ACCEPTED], ids=[name for name, _ in ACCEPTED])
def test_what_botocore_signs_with_the_platform_credential_is_accepted(
    case: Callable[[], tuple[str, str, dict[str, str], bytes]],
) -> None:
    assert _verify(case()) is None


def test_unsigned_requests_are_refused() -> None:
    method, target, headers, body = _signed("POST", "/", b"{}", JSON_HEADERS)
    del headers["authorization"]
    assert _verify((method, target, headers, body)) == "MissingAuthenticationToken"


def test_another_credential_is_refused() -> None:
    other = Credentials.generate()
    assert _verify(_signed("POST", "/", b"{}", JSON_HEADERS, creds=other)) == "UnrecognizedClientException"


def test_the_right_key_id_with_a_wrong_secret_is_refused() -> None:
    """Knowing the key id (it travels in every request) is not enough."""
    forged = Credentials(PLATFORM.access_key_id, "not-the-secret")
    assert _verify(_signed("POST", "/", b"{}", JSON_HEADERS, creds=forged)) == "SignatureDoesNotMatch"
    presigned = _signed("GET", "/bucket/k", service="s3", creds=forged, signer=S3SigV4QueryAuth)
    assert _verify(presigned) == "SignatureDoesNotMatch"


@pytest.mark.parametrize("part", ["method", "path", "query", "header", "body"])
def test_a_signed_request_changed_in_transit_is_refused(part: str) -> None:
    method, target, headers, body = _signed("POST", "/x?a=1", b'{"TableName": "t"}', JSON_HEADERS)
    if part == "method":
        method = "PUT"
    elif part == "path":
        target = "/y?a=1"
    elif part == "query":
        target = "/x?a=2"
    elif part == "header":
        headers["x-amz-target"] = "DynamoDB_20120810.DeleteTable"
    else:
        body = b'{"TableName": "other"}'
    assert _verify((method, target, headers, body)) == "SignatureDoesNotMatch"


def test_an_s3_body_that_is_not_the_declared_one_is_refused() -> None:
    method, target, headers, _ = _signed("PUT", "/bucket/k", b"signed", service="s3", signer=S3SigV4Auth)
    assert _verify((method, target, headers, b"swapped")) == "XAmzContentSHA256Mismatch"


def test_old_and_future_signatures_are_refused() -> None:
    request = _signed("POST", "/", b"{}", JSON_HEADERS)
    now = time.time()
    assert _verify(request, SigV4Verifier(PLATFORM, clock=lambda: now + 16 * 60)) == "InvalidSignatureException"
    assert _verify(request, SigV4Verifier(PLATFORM, clock=lambda: now - 16 * 60)) == "InvalidSignatureException"
    assert _verify(request, SigV4Verifier(PLATFORM, clock=lambda: now + 14 * 60)) is None
    presigned = _signed("GET", "/bucket/k", service="s3", signer=S3SigV4QueryAuth)  # expires in 300 s
    assert _verify(presigned, SigV4Verifier(PLATFORM, clock=lambda: now + 301)) == "InvalidSignatureException"


def test_a_signature_that_does_not_cover_host_is_refused() -> None:
    method, target, headers, body = _signed("POST", "/", b"{}", JSON_HEADERS)
    auth = headers["authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0]
    headers["authorization"] = auth.replace(signed, ";".join(h for h in signed.split(";") if h != "host"))
    assert _verify((method, target, headers, body)) == "IncompleteSignatureException"


def test_without_a_credential_everything_is_refused() -> None:
    assert _verify(_signed("POST", "/", b"{}", JSON_HEADERS), SigV4Verifier(None)) == "UnrecognizedClientException"


def test_a_refused_key_id_never_reads_the_body() -> None:
    method, target, headers, _ = _signed("POST", "/", b"{}", JSON_HEADERS, creds=Credentials.generate())

    def read_body() -> bytes:
        raise AssertionError("the body was read")

    refusal = SigV4Verifier(PLATFORM).verify(method, target, headers, read_body)
    assert refusal is not None and refusal.code == "UnrecognizedClientException"


def test_verification_costs_well_under_a_third_of_a_millisecond() -> None:
    """Every embedded-AWS call pays it: the budget is 0.3 ms per request (measured ~20 us)."""
    verifier = SigV4Verifier(PLATFORM)
    method, target, headers, body = _signed("POST", "/", b'{"TableName": "t", "Key": {}}' * 20, JSON_HEADERS)
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        assert verifier.verify(method, target, headers, lambda: body) is None
    per_request = (time.perf_counter() - started) / rounds
    assert per_request < 0.3e-3, f"{per_request * 1e6:.0f} us per request"


def test_the_credential_file_is_private_and_the_secret_never_printed(tmp_path: Path) -> None:
    creds = Credentials.generate()
    path = tmp_path / "aws-credentials"
    creds.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Credentials.load(path) == creds
    assert creds.secret_access_key not in repr(creds) and creds.access_key_id in repr(creds)
