"""The app's role grants on the table and the bucket exactly what the app's own code calls.

The code side is read from the source: every boto3 call of a cloud-side module (``chalicelib``
without the local stack, the engine, which runs on the cluster under its own roles, and the two
store modules only the local stack uses), mapped to the IAM action it needs. A grant nobody calls,
or a call nobody granted, fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from synth_support import REPO_ROOT, Synth

CHALICELIB = REPO_ROOT / "chalicelib"
#: Modules that never run in the cloud's Lambda functions.
LOCAL_ONLY = {"store/snapshot.py", "store/provision.py"}
EXCLUDED_DIRS = ("local/", "engine/")

#: boto3 method -> the IAM actions it needs.
DYNAMODB_CALLS = {
    "get_item": {"dynamodb:GetItem"},
    "put_item": {"dynamodb:PutItem"},
    "update_item": {"dynamodb:UpdateItem"},
    "delete_item": {"dynamodb:DeleteItem"},
    "query": {"dynamodb:Query"},
    "scan": {"dynamodb:Scan"},
    "batch_get_item": {"dynamodb:BatchGetItem"},
    "batch_write_item": {"dynamodb:BatchWriteItem"},
    "batch_writer": {"dynamodb:BatchWriteItem"},
    "describe_table": {"dynamodb:DescribeTable"},
}
#: TransactWriteItems needs the action of each kind of part it holds.
TRANSACT_PARTS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
S3_CALLS = {
    "get_object": {"s3:GetObject"},
    "put_object": {"s3:PutObject"},
    "list_objects_v2": {"s3:ListBucket"},
    "delete_object": {"s3:DeleteObject"},
    "delete_objects": {"s3:DeleteObject"},
    "head_object": {"s3:GetObject"},
    "upload_file": {"s3:PutObject", "s3:AbortMultipartUpload"},
    "upload_fileobj": {"s3:PutObject", "s3:AbortMultipartUpload"},
    "download_file": {"s3:GetObject"},
}


def cloud_sources() -> dict[str, str]:
    """Relative path -> text of every module that runs in the app's Lambda functions."""
    out = {}
    for path in sorted(CHALICELIB.rglob("*.py")):
        rel = path.relative_to(CHALICELIB).as_posix()
        if rel.startswith(EXCLUDED_DIRS) or rel in LOCAL_ONLY:
            continue
        out[rel] = path.read_text()
    out["../app.py"] = (REPO_ROOT / "app.py").read_text()
    return out


def called(calls: dict[str, set[str]], sources: dict[str, str]) -> set[str]:
    needed: set[str] = set()
    for text in sources.values():
        for method, actions in calls.items():
            if re.search(rf"\.{method}\(", text):
                needed |= actions
    return needed


def dynamodb_needed(sources: dict[str, str]) -> set[str]:
    needed = called(DYNAMODB_CALLS, sources)
    for text in sources.values():
        if ".transact_write_items(" in text or "transact_write_items" in text:
            for part, action in TRANSACT_PARTS.items():
                if re.search(rf"[\"']{part}[\"']\s*:", text):
                    needed.add(action)
    return needed


def app_statements(template: dict[str, Any]) -> dict[str, set[str]]:
    """Sid -> actions of the app role's inline policy."""
    [role] = [r for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role" and k.startswith("AppRole")]
    out: dict[str, set[str]] = {}
    for policy in role["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            out[statement["Sid"]] = {actions} if isinstance(actions, str) else set(actions)
    return out


def test_local_only_modules_are_imported_only_by_the_local_stack() -> None:
    for rel, text in cloud_sources().items():
        for module in LOCAL_ONLY:
            dotted = "chalicelib." + module.removesuffix(".py").replace("/", ".")
            assert dotted not in text, f"{rel} imports {dotted}, which the Lambda role does not cover"


def test_table_grants_are_exactly_the_calls_the_code_makes(dev: Synth) -> None:
    granted = app_statements(dev.template_json)["Table"]
    needed = dynamodb_needed(cloud_sources())
    assert granted == needed, {"granted, never called": granted - needed, "called, not granted": needed - granted}
    assert "dynamodb:Scan" not in granted  # a Scan would read every user's items


def test_bucket_grants_are_exactly_the_calls_the_code_makes(dev: Synth) -> None:
    statements = app_statements(dev.template_json)
    granted = statements["BucketObjects"] | statements["BucketList"] | statements["BucketUploadsDelete"]
    needed = called(S3_CALLS, cloud_sources())
    assert granted == needed, {"granted, never called": granted - needed, "called, not granted": needed - granted}
    assert "s3:DeleteObject" not in statements["BucketObjects"]  # deletes reach the users' uploads only


def test_deletes_reach_only_the_users_uploads(dev: Synth) -> None:
    [role] = [r for k, r in dev.template_json["Resources"].items() if k.startswith("AppRole")]
    [statement] = [
        s
        for p in role["Properties"]["Policies"]
        for s in p["PolicyDocument"]["Statement"]
        if "s3:DeleteObject" in s["Action"]
    ]
    assert json.dumps(statement["Resource"]).endswith('"/uploads/*"]]}'), statement["Resource"]


def test_the_detector_sees_what_it_should() -> None:
    """The source reading is not vacuous: the calls this project is known to make are found."""
    sources = cloud_sources()
    assert {"dynamodb:GetItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem"} <= dynamodb_needed(sources)
    assert "store/users.py" in sources and "store/snapshot.py" not in sources
    assert Path(CHALICELIB / "store" / "snapshot.py").read_text().count(".scan(") == 1
