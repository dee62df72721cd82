"""S3 access for users' own files under ``uploads/<user_id>/``: presigned URLs, listing, deletion.

Only keys the domain (``chalicelib.files``) built are passed here; nothing in this module decides who
may touch what.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.config import settings
from chalicelib.store.aws import client


def _signer() -> Any:
    """An S3 client that presigns with SigV4 (boto3's default for S3 presigning is SigV2, which neither
    signs ``Content-Length`` nor is accepted by the embedded AWS); made per call, so never stale."""
    return boto3.client("s3", config=Config(signature_version="s3v4"), endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))  # type: ignore[call-overload]


def presigned_put(key: str, size: int, content_type: str, expires: int) -> str:
    """A URL that stores one object at ``key``; ``Content-Length`` and ``Content-Type`` are signed."""
    url: str = _signer().generate_presigned_url(
        "put_object",
        Params={"Bucket": settings().bucket_name, "Key": key, "ContentLength": size, "ContentType": content_type},
        ExpiresIn=expires,
        HttpMethod="PUT",
    )
    return url


def presigned_get(key: str, filename: str, expires: int) -> str:
    """A URL that downloads the object at ``key`` (as an attachment named ``filename``)."""
    url: str = _signer().generate_presigned_url(
        "get_object",
        Params={
            "Bucket": settings().bucket_name,
            "Key": key,
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
        },
        ExpiresIn=expires,
    )
    return url


def head(key: str) -> dict[str, Any] | None:
    """``{size, last_modified}`` of the object at ``key``, or None when there is none."""
    try:
        got = client("s3").head_object(Bucket=settings().bucket_name, Key=key)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return {"size": int(got["ContentLength"]), "last_modified": got["LastModified"]}


def list_objects(prefix: str, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` objects under ``prefix``, in key order: ``{key, size, last_modified}``."""
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Bucket": settings().bucket_name, "Prefix": prefix, "MaxKeys": min(limit, 1000)}
    while len(out) < limit:
        page = client("s3").list_objects_v2(**kwargs)
        for obj in page.get("Contents", []):
            out.append({"key": obj["Key"], "size": int(obj["Size"]), "last_modified": obj["LastModified"]})
        if not page.get("IsTruncated"):
            break
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
    return out[:limit]


def delete(key: str) -> None:
    """Remove the object at ``key`` (no error when it is already gone)."""
    client("s3").delete_object(Bucket=settings().bucket_name, Key=key)
