"""Server-side AWS Signature Version 4 verification for the local stack's own AWS stand-ins.

The embedded AWS (moto) and the local ``@connections`` API accept only requests signed with the
stack's platform credential, as the real services accept only signed requests. A request is
accepted when its ``Authorization: AWS4-HMAC-SHA256 ...`` header (or presigned ``X-Amz-*`` query)
names the platform's access key id and carries the signature the platform's secret gives for the
request as received: method, path, query, the signed headers and the payload hash. The signature
must be no older than 15 minutes (AWS's skew window), and a payload hash a client sends in
``X-Amz-Content-SHA256`` must be the body's.

Checking the key id alone would not be enough: anything that sees a request's headers (a log, an
error message, a traceback) sees the key id, never the secret. Recomputing the signature costs a
canonical request, two SHA-256 and one HMAC (the signing key is derived once per day, region and
service): tens of microseconds per request.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_tz
from urllib.parse import quote, unquote, urlsplit

from botocore.utils import normalize_url_path

from chalicelib.local.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_SECONDS = 15 * 60
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEX64 = re.compile(r"[0-9a-f]{64}")
_AUTH_FIELD = re.compile(r"(Credential|SignedHeaders|Signature)=([^,\s]*)")


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused, in AWS's terms."""

    status: int
    code: str
    message: str


MISSING = Refusal(403, "MissingAuthenticationToken", "Request is missing Authentication Token")
UNKNOWN_KEY = Refusal(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
BAD_SIGNATURE = Refusal(
    403,
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method.",
)
INCOMPLETE = Refusal(403, "IncompleteSignatureException", "The request signature is malformed or incomplete.")
EXPIRED = Refusal(403, "InvalidSignatureException", "Signature expired or not yet current.")
PAYLOAD_MISMATCH = Refusal(
    400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed."
)


def _canonical_query(query: str, drop_signature: bool) -> str:
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        key, value = unquote(key), unquote(value)
        if drop_signature and key == "X-Amz-Signature":
            continue
        pairs.append((quote(key, safe="-_.~"), quote(value, safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _query_params(query: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in query.split("&"):
        key, _, value = part.partition("=")
        out.setdefault(unquote(key), unquote(value))
    return out


def _amz_time(stamp: str) -> float | None:
    """Seconds since the epoch of an ``X-Amz-Date`` (``20260101T000000Z``), None when malformed."""
    if len(stamp) != 16 or stamp[8] != "T" or stamp[15] != "Z" or not (stamp[:8] + stamp[9:15]).isdigit():
        return None
    try:
        fields = (int(stamp[0:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]), int(stamp[11:13]))
        return float(calendar.timegm((*fields, int(stamp[13:15]), 0, 0, 0)))
    except ValueError:
        return None


class SigV4Verifier:
    """Verifies SigV4 requests against one credential (any region, any service)."""

    def __init__(
        self,
        credentials: Credentials | None,
        *,
        max_skew: float = MAX_SKEW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.max_skew = max_skew
        self.clock = clock
        self._keys: dict[tuple[str, str, str], bytes] = {}
        self._lock = threading.Lock()

    def _signing_key(self, day: str, region: str, service: str) -> bytes:
        cached = self._keys.get((day, region, service))
        if cached is not None:
            return cached
        assert self.credentials is not None
        key = ("AWS4" + self.credentials.secret_access_key).encode()
        for part in (day, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        with self._lock:
            if len(self._keys) > 64:
                self._keys.clear()
            self._keys[(day, region, service)] = key
        return key

    def key_id_of(self, headers: Mapping[str, str], query: str) -> str | None:
        """The access key id a request claims (cheap: no signature check), or None when it claims none."""
        auth = headers.get("authorization", "")
        if auth.startswith(ALGORITHM):
            match = re.search(r"Credential=([^/,\s]*)/", auth)
            return match.group(1) if match else ""
        if "X-Amz-Credential" in query:
            return _query_params(query).get("X-Amz-Credential", "").split("/", 1)[0]
        return None

    def verify(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        read_body: Callable[[], bytes],
        *,
        s3_path: bool | None = None,
    ) -> Refusal | None:
        """None when the request is signed with the credential, else why not.

        ``target`` is the request line's target as received (path and query, percent-encoded);
        ``headers`` maps lower-case names to values (repeated headers joined with ``,``);
        ``read_body`` is called only when the signature covers the payload. ``s3_path``: canonical
        path as sent (S3) rather than normalized and encoded again (every other service); None
        decides from the credential scope's service.
        """
        if self.credentials is None:
            return UNKNOWN_KEY
        parts = urlsplit(target)
        path, query = parts.path or "/", parts.query
        auth = headers.get("authorization", "")
        presigned = not auth and "X-Amz-Credential" in query
        if presigned:
            params = _query_params(query)
            if params.get("X-Amz-Algorithm") != ALGORITHM:
                return INCOMPLETE
            credential = params.get("X-Amz-Credential", "")
            signed_headers = params.get("X-Amz-SignedHeaders", "")
            signature = params.get("X-Amz-Signature", "")
            stamp = params.get("X-Amz-Date", "")
            try:
                expires = int(params.get("X-Amz-Expires", "0"))
            except ValueError:
                return INCOMPLETE
        elif auth:
            if not auth.startswith(ALGORITHM + " "):
                return INCOMPLETE
            fields = dict(_AUTH_FIELD.findall(auth))
            credential = fields.get("Credential", "")
            signed_headers = fields.get("SignedHeaders", "")
            signature = fields.get("Signature", "")
            stamp = headers.get("x-amz-date", "")
            if not stamp and "date" in headers:
                parsed = parsedate_tz(headers["date"])
                if parsed is not None:
                    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(calendar.timegm(parsed[:9]) - (parsed[9] or 0)))
        else:
            return MISSING

        scope = credential.split("/")
        if len(scope) != 5 or scope[4] != "aws4_request" or not signed_headers or not signature:
            return INCOMPLETE
        key_id, day, region, service, _ = scope
        if not hmac.compare_digest(key_id.encode(), self.credentials.access_key_id.encode()):
            return UNKNOWN_KEY
        when = _amz_time(stamp)
        if when is None or stamp[:8] != day:
            return INCOMPLETE
        now = self.clock()
        if presigned:
            if not 0 < expires <= MAX_PRESIGN_SECONDS or now > when + expires or when - now > self.max_skew:
                return EXPIRED
        elif abs(now - when) > self.max_skew:
            return EXPIRED
        names = signed_headers.split(";")
        if "host" not in names:
            return INCOMPLETE

        s3 = service == "s3" if s3_path is None else s3_path
        canonical_path = path if s3 else quote(normalize_url_path(path), safe="/~")
        canonical_headers = "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in names)
        declared = headers.get("x-amz-content-sha256")
        if declared is not None:
            payload_hash = declared
            if _HEX64.fullmatch(declared) and hashlib.sha256(read_body()).hexdigest() != declared:
                return PAYLOAD_MISMATCH
        elif presigned and s3:
            payload_hash = "UNSIGNED-PAYLOAD"
        else:
            body = read_body()
            payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        canonical_request = "\n".join(
            (
                method.upper(),
                canonical_path,
                _canonical_query(query, drop_signature=presigned),
                canonical_headers,
                signed_headers,
                payload_hash,
            )
        )
        request_hash = hashlib.sha256(canonical_request.encode()).hexdigest()
        string_to_sign = f"{ALGORITHM}\n{stamp}\n{day}/{region}/{service}/aws4_request\n{request_hash}"
        signing_key = self._signing_key(day, region, service)
        expected = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return BAD_SIGNATURE
        return None
