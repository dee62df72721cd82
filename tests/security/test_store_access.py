"""User code cannot reach the platform's table or bucket (whatever loopback endpoint it finds, with
whatever credential it holds or guesses), so it cannot become admin, overwrite another user's item,
forge a log chunk the stream would push, or write the bucket; a token minted with a key it tried to
steal is rejected."""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
import pytest

from tests.security.conftest import DISCOVER, Outcome, Secrets, Tenants, jwt_keys

STORE_PROBE = (
    DISCOVER
    + r"""
import os
try:
    import boto3
    from botocore.config import Config
except ImportError as err:
    report({"boto3": str(err), "attempts": [], "endpoints": [], "ports": []})
    raise SystemExit(0)

endpoints, ports = http_endpoints("AWS_ENDPOINT_URL")
creds = []
if os.environ.get("AWS_ACCESS_KEY_ID"):
    creds.append((os.environ["AWS_ACCESS_KEY_ID"], os.environ.get("AWS_SECRET_ACCESS_KEY", "")))
creds += [("testing", "testing"), ("local", "local")]
creds += [("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")]
config = Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1})
user = lambda name: {"pk": {"S": "USER#" + name}, "sk": {"S": "USER"}}
attempts = []


def scan_users(ddb):
    users, kwargs = [], {"TableName": P["table"]}
    for _ in range(20):
        page = ddb.scan(**kwargs)
        users += [
            {k: list(v.values())[0] for k, v in item.items() if k in ("pk", "password_hash", "is_admin")}
            for item in page["Items"]
            if item["pk"]["S"].startswith("USER#")
        ]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return users


def ops(ddb, s3):
    yield "scan", lambda: scan_users(ddb)
    yield "make me admin", lambda: ddb.update_item(
        TableName=P["table"], Key=user(P["me"]), UpdateExpression="SET is_admin = :t",
        ConditionExpression="attribute_exists(pk)", ExpressionAttributeValues={":t": {"BOOL": True}},
    ) and "updated"
    yield "overwrite victim hash", lambda: ddb.update_item(
        TableName=P["table"], Key=user(P["victim"]), UpdateExpression="SET password_hash = :h",
        ConditionExpression="attribute_exists(pk)", ExpressionAttributeValues={":h": {"S": P["forged_hash"]}},
    ) and "updated"
    yield "forge a log chunk", lambda: ddb.put_item(
        TableName=P["table"],
        Item={"pk": {"S": "JOB#" + P["victim_exec"]}, "sk": {"S": "LOG#999999"}, "first_line": {"N": "999999"},
              "lines": {"L": [{"L": [{"S": "INFO"}, {"S": P["marker"]}]}]}},
    ) and "put"
    yield "list the bucket", lambda: [
        o["Key"] for o in s3.list_objects_v2(Bucket=P["bucket"], MaxKeys=20).get("Contents", [])
    ]
    yield "write the bucket", lambda: s3.put_object(Bucket=P["bucket"], Key=P["object"], Body=b"pwned") and "put"


for endpoint in endpoints:
    for key_id, secret in creds:
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key_id,
                  aws_secret_access_key=secret, config=config)
        ddb, s3 = boto3.client("dynamodb", **kw), boto3.client("s3", **kw)
        probe = attempt("list tables", lambda: ddb.list_tables()["TableNames"])
        attempts.append({"endpoint": endpoint, "key": key_id[:4], "op": "list tables", **probe})
        if not probe["ok"] and ("Connect" in probe["error"] or "Timeout" in probe["error"]):
            break
        for op, fn in ops(ddb, s3):
            attempts.append({"endpoint": endpoint, "key": key_id[:4], "op": op, **attempt(op, fn)})
report({"endpoints": endpoints, "ports": ports, "attempts": attempts})
"""
)


@pytest.fixture(scope="module")
def store_attack(tenants: Tenants) -> tuple[dict[str, Any], Outcome, dict[str, Any], str]:
    bob_before = tenants.platform.user("bob")
    params = {
        "table": "sparkgate",
        "bucket": "sparkgate",
        "me": "alice",
        "victim": "bob",
        "victim_exec": tenants.bob_warmup.exec_id,
        "forged_hash": "scrypt$16384$8$1$forged$forged",
        "marker": f"FORGED-LOG-{secrets.token_hex(6)}",
        "object": f"engine/sg-pwned-{secrets.token_hex(4)}.txt",
    }
    rep, outcome = tenants.alice.probe(STORE_PROBE, params, timeout=300)
    return rep, outcome, bob_before, params["object"]


def test_user_code_reaches_no_table_or_bucket_operation(
    store_attack: tuple[dict[str, Any], Outcome, dict[str, Any], str],
) -> None:
    rep = store_attack[0]
    succeeded = [(a["endpoint"], a["key"], a["op"]) for a in rep["attempts"] if a["ok"]]
    assert succeeded == [], f"user code did {succeeded} (endpoints found: {rep['endpoints']})"


def test_the_attacker_is_still_not_admin(
    store_attack: tuple[dict[str, Any], Outcome, dict[str, Any], str], tenants: Tenants
) -> None:
    assert not tenants.platform.user("alice").get("is_admin"), "alice's user item says is_admin"
    status, answer = tenants.alice.call("POST", "/api/v1/users", {"username": "mallet", "password": "mallet-password"})
    assert status == 403, (status, answer)


def test_the_victims_item_is_unchanged_and_can_still_log_in(
    store_attack: tuple[dict[str, Any], Outcome, dict[str, Any], str], tenants: Tenants
) -> None:
    assert tenants.platform.user("bob") == store_attack[2]
    status, answer, _ = tenants.stack.call("POST", "/token", {"username": "bob", "password": tenants.bob.password})
    assert status == 200, answer


def test_no_forged_item_or_object_was_written(
    store_attack: tuple[dict[str, Any], Outcome, dict[str, Any], str], tenants: Tenants
) -> None:
    assert tenants.platform.item(f"JOB#{tenants.bob_warmup.exec_id}", "LOG#999999") is None
    assert not tenants.platform.object_exists(store_attack[3])


def test_nothing_of_the_table_leaked_to_the_attacker(
    store_attack: tuple[dict[str, Any], Outcome, dict[str, Any], str], platform_secrets: Secrets
) -> None:
    assert platform_secrets.found_in(store_attack[1].text()) == []


MINT_PROBE = r"""
import glob, json, os, time
keys = {}


def take(text):
    doc = json.loads(text)
    keys.update(doc.get("keys", {}))


def by_open():
    with open(P["keyfile"]) as fh:
        take(fh.read())


def by_spark():
    take("".join(r.value for r in spark.read.text(P["keyfile"]).collect()))


def by_sql():
    take("".join(r[0] for r in spark.sql("select value from text.`%s`" % P["keyfile"]).collect()))


def by_glob():
    take("".join(r.value for r in spark.read.text(P["glob"]).collect()))


tried = {name: attempt(name, fn) for name, fn in
         (("open", by_open), ("spark", by_spark), ("sql", by_sql), ("glob", by_glob))}
tokens = {}
try:
    import jwt
except ImportError:
    jwt = None
now = int(time.time())
for kid, key in (keys.items() if jwt else []):
    secret = bytes.fromhex(key) if all(c in "0123456789abcdef" for c in key.lower()) else key.encode()
    for who, sub in (("admin", P["admin_id"]), ("bob", P["bob_id"])):
        claims = {"sub": sub, "name": who, "iat": now, "exp": now + 3600}
        tokens[who + ":" + kid] = jwt.encode(claims, secret, algorithm="HS512", headers={"kid": kid})
report({"kids": sorted(keys), "tokens": tokens, "tried": {k: v.get("error") for k, v in tried.items()}})
"""


@pytest.fixture(scope="module")
def minted(tenants: Tenants) -> tuple[dict[str, Any], Outcome]:
    state = tenants.stack.state_dir
    params = {
        "keyfile": str(state / "jwt-keys.json"),
        "glob": str(tenants.layout.shared / "statelin[k]" / "jwt-keys.json"),
        "admin_id": tenants.admin_user_id,
        "bob_id": tenants.bob.user_id,
    }
    return tenants.alice.probe(MINT_PROBE, params)


def _harness_token(tenants: Tenants, sub: str, name: str) -> str:
    """A token the platform itself would sign (the harness reads the real key)."""
    keys = jwt_keys(tenants.stack.state_dir)
    kid = sorted(keys)[0]
    key = keys[kid]
    secret = bytes.fromhex(key) if all(c in "0123456789abcdef" for c in key.lower()) else key.encode()
    now = int(time.time())
    return jwt.encode(
        {"sub": sub, "name": name, "iat": now, "exp": now + 600}, secret, algorithm="HS512", headers={"kid": kid}
    )


def test_tokens_minted_by_user_code_are_rejected(minted: tuple[dict[str, Any], Outcome], tenants: Tenants) -> None:
    stack = tenants.stack
    control = _harness_token(tenants, tenants.bob.user_id, "bob")  # the request itself is right
    assert stack.call("GET", "/api/v1/works", token=control)[0] == 200
    accepted = []
    for name, token in minted[0]["tokens"].items():
        status, _, _ = stack.call("GET", "/api/v1/works", token=token)
        if status != 401:
            accepted.append((name, status))
        who = {"username": f"minted-{secrets.token_hex(3)}", "password": "minted-password"}
        status, _, _ = stack.call("POST", "/api/v1/users", who, token=token)
        if status != 401:
            accepted.append((f"{name} creating a user", status))
    assert accepted == [], f"tokens minted with a key user code obtained were accepted: {accepted}"


def test_user_code_obtains_no_signing_key(minted: tuple[dict[str, Any], Outcome], platform_secrets: Secrets) -> None:
    rep, outcome = minted
    assert rep["kids"] == [], f"user code read the JWT key(s) {rep['kids']} ({rep['tried']})"
    assert platform_secrets.found_in(outcome.text()) == []
