"""User records, the admin roster, revoked token ids and failed-login counters.

- user: ``pk = USER#<username>``, ``sk = USER``; ``gsi1 = (USERS, <username>)`` so admins can list users.
  ``token_version`` (int, default 0) is copied into every token; bumping it revokes them all at once.
- admin roster: ``pk = ADMINS``, ``sk = ADMINS``, string set ``admins`` of the *active* admins (admin
  and not disabled). Every change that takes a user out of it is a transaction with a condition on
  the roster (``contains(admins, :u) AND size(admins) > 1``): DynamoDB serialises those writes on the
  one item, so two racing demotions can never leave no admin.
- revoked token id: ``pk = REVOKED#<jti>``, ``sk = REVOKED``, ``expiration`` = the token's own ``exp``
  (TTL attribute: the item goes once the token would have expired anyway).
- failed logins: ``pk = LOGINFAIL#<kind>#<value>``, ``sk = LOGINFAIL``, atomic ``fails`` counter and
  ``expiration`` (end of the window, TTL attribute; readers ignore an item past it since TTL is lazy).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib.errors import Conflict, NotFound, StateConflict
from chalicelib.store.aws import put_new, query_all, table, update_if
from chalicelib.store.errors import cancelled_indexes, is_condition_failure
from chalicelib.store.items import decode

USERS_INDEX = "USERS"
ROSTER_KEY = {"pk": "ADMINS", "sk": "ADMINS"}


def _key(username: str) -> dict[str, str]:
    return {"pk": f"USER#{username}", "sk": "USER"}


def active_admin(record: dict[str, Any]) -> bool:
    """True for an admin who is not disabled (a member of the roster)."""
    return bool(record.get("is_admin")) and not record.get("disabled")


def get_user(username: str) -> dict[str, Any] | None:
    """The stored user record, or None. A record from before the user index gets it here (once)."""
    item: dict[str, Any] | None = table().get_item(Key=_key(username), ConsistentRead=True).get("Item")
    if item is None:
        return None
    if "gsi1pk" not in item:
        update_if(
            _key(username),
            {"gsi1pk": USERS_INDEX, "gsi1sk": username},
            "attribute_exists(pk)",
        )
    return decode(item)


def list_users() -> list[dict[str, Any]]:
    """Every user record (the user index, in username order)."""
    items = query_all(IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq(USERS_INDEX))
    return [decode(item) for item in items if item.get("sk") == "USER"]


def _roster() -> set[str]:
    """The active admins; the roster item is built from the user index the first time it is needed."""
    item = table().get_item(Key=ROSTER_KEY, ConsistentRead=True).get("Item")
    if item is not None:
        return {str(name) for name in item.get("admins", set())}
    admins = {u["username"] for u in list_users() if active_admin(u)}
    if admins:
        put_new({**ROSTER_KEY, "admins": admins})
    else:
        put_new({**ROSTER_KEY})
    got = table().get_item(Key=ROSTER_KEY, ConsistentRead=True).get("Item") or {}
    return {str(name) for name in got.get("admins", set())}


def active_admins() -> set[str]:
    """Usernames of the admins who are not disabled."""
    return _roster()


def _transact(items: list[dict[str, Any]]) -> list[int] | None:
    """Run a transaction; the indexes whose condition failed, or None when it went through."""
    try:
        table().meta.client.transact_write_items(TransactItems=items)
    except ClientError as err:
        if is_condition_failure(err):
            return cancelled_indexes(err) or [-1]
        raise
    return None


def _roster_add(username: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table().name,
            "Key": ROSTER_KEY,
            "UpdateExpression": "ADD admins :u",
            "ExpressionAttributeValues": {":u": {username}},
        }
    }


def _roster_remove(username: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table().name,
            "Key": ROSTER_KEY,
            "UpdateExpression": "DELETE admins :u",
            "ConditionExpression": "contains(admins, :name) AND size(admins) > :one",
            "ExpressionAttributeValues": {":u": {username}, ":name": username, ":one": 1},
        }
    }


LAST_ADMIN = "the last administrator cannot be removed, disabled or demoted; make another user an admin first"


def put_new_user(record: dict[str, Any]) -> None:
    """Store a new user (an active admin joins the roster in the same transaction); :class:`Conflict`
    when the username is taken."""
    username = record["username"]
    item = {**_key(username), "gsi1pk": USERS_INDEX, "gsi1sk": username, "token_version": 0, **record}
    if not active_admin(record):
        if not put_new(item):
            raise Conflict(f"user {username!r} already exists", field="username")
        return
    _roster()  # exists before the ADD, or the first ADD would make a roster of one
    put = {"Put": {"TableName": table().name, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}
    if _transact([put, _roster_add(username)]) is not None:
        raise Conflict(f"user {username!r} already exists", field="username")


def update_user(current: dict[str, Any], fields: dict[str, Any], *, revoke: bool) -> dict[str, Any]:
    """Set ``fields`` on the user ``current`` was read from (same user id and token version), bump
    ``token_version`` when ``revoke``, and move the user in or out of the admin roster in the same
    transaction. :class:`StateConflict` for the last admin, :class:`Conflict` when the record changed
    meanwhile, :class:`NotFound` when it went."""
    username = current["username"]
    after = {**current, **fields}
    names = {f"#f{i}": k for i, k in enumerate(fields)}
    values: dict[str, Any] = {f":v{i}": v for i, v in enumerate(fields.values())}
    values.update({":uid": current["user_id"], ":ver": int(current.get("token_version", 0)), ":zero": 0})
    sets = [f"#f{i} = :v{i}" for i in range(len(fields))]
    names["#tv"] = "token_version"
    if revoke:
        values[":one"] = 1
        sets.append("#tv = if_not_exists(#tv, :zero) + :one")
    update: dict[str, Any] = {
        "Update": {
            "TableName": table().name,
            "Key": _key(username),
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": "user_id = :uid AND (#tv = :ver OR (attribute_not_exists(#tv) AND :ver = :zero))",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }
    items = [update]
    was, now = active_admin(current), active_admin(after)
    if was != now:
        _roster()
        items.append(_roster_remove(username) if was else _roster_add(username))
    failed = _transact(items)
    if failed is not None:
        if 1 in failed:
            raise StateConflict(LAST_ADMIN)
        if get_user(username) is None:
            raise NotFound(f"user {username} not found")
        raise Conflict(f"user {username!r} was changed by someone else; retry")
    return {**after, "token_version": int(current.get("token_version", 0)) + (1 if revoke else 0)}


def delete_user(current: dict[str, Any]) -> None:
    """Delete the user ``current`` was read from (leaving the roster in the same transaction)."""
    username = current["username"]
    delete = {
        "Delete": {
            "TableName": table().name,
            "Key": _key(username),
            "ConditionExpression": "user_id = :uid",
            "ExpressionAttributeValues": {":uid": current["user_id"]},
        }
    }
    items = [delete]
    if active_admin(current):
        _roster()
        items.append(_roster_remove(username))
    failed = _transact(items)
    if failed is not None:
        if 1 in failed:
            raise StateConflict(LAST_ADMIN)
        raise NotFound(f"user {username} not found")


# ---- revoked token ids -------------------------------------------------------------------------


def revoke_token_id(jti: str, expires_at: int) -> None:
    """Deny token id ``jti`` until ``expires_at`` (epoch seconds, the token's own ``exp``)."""
    table().put_item(Item={"pk": f"REVOKED#{jti}", "sk": "REVOKED", "expiration": int(expires_at)})


def identity_state(username: str, jti: str | None) -> tuple[dict[str, Any] | None, bool]:
    """The user record (or None) and whether ``jti`` is revoked, in one consistent BatchGetItem."""
    keys = [_key(username)]
    if jti:
        keys.append({"pk": f"REVOKED#{jti}", "sk": "REVOKED"})
    name = table().name
    request: dict[str, Any] = {name: {"Keys": keys, "ConsistentRead": True}}
    found: list[dict[str, Any]] = []
    for _ in range(5):
        got = table().meta.client.batch_get_item(RequestItems=request)
        found.extend(got.get("Responses", {}).get(name, []))
        request = got.get("UnprocessedKeys") or {}
        if not request:
            break
    user = next((item for item in found if item.get("sk") == "USER"), None)
    now = time.time()
    revoked = any(item.get("sk") == "REVOKED" and int(item.get("expiration", 0)) > now for item in found)
    return (decode(user) if user else None), revoked


# ---- failed logins -------------------------------------------------------------------------------


def _fail_key(kind: str, value: str) -> dict[str, str]:
    return {"pk": f"LOGINFAIL#{kind}#{value}", "sk": "LOGINFAIL"}


def failure_counts(subjects: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """``(fails, expiration)`` per ``(kind, value)`` in the current window; (0, 0) when none or expired."""
    name = table().name
    keys = [_fail_key(kind, value) for kind, value in subjects]
    got = table().meta.client.batch_get_item(RequestItems={name: {"Keys": keys, "ConsistentRead": True}})
    found = {str(item["pk"]): item for item in got.get("Responses", {}).get(name, [])}
    now = int(time.time())
    out = []
    for key in keys:
        item = found.get(key["pk"])
        if item is None or int(item.get("expiration", 0)) <= now:
            out.append((0, 0))
        else:
            out.append((int(item.get("fails", 0)), int(item["expiration"])))
    return out


def add_failure(kind: str, value: str, window_seconds: int) -> tuple[int, int]:
    """Count one failed login for ``(kind, value)``: ``ADD`` within the live window, or a fresh
    window when the item is missing or past its expiration. Answers ``(fails, expiration)``."""
    key = _fail_key(kind, value)
    now = int(time.time())
    for _ in range(4):
        try:
            got = table().update_item(
                Key=key,
                UpdateExpression="ADD fails :one",
                ConditionExpression="expiration > :now",
                ExpressionAttributeValues={":one": 1, ":now": now},
                ReturnValues="ALL_NEW",
            )
            attrs = got["Attributes"]
            return int(attrs["fails"]), int(attrs["expiration"])
        except ClientError as err:
            if not is_condition_failure(err):
                raise
        # no live window: start one, unless another writer just did (then ADD again)
        fresh = update_if(
            key,
            {"fails": 1, "expiration": now + window_seconds},
            "attribute_not_exists(pk) OR expiration <= :now",
            values={":now": now},
        )
        if fresh is not None:
            return 1, now + window_seconds
    return 1, now + window_seconds


def clear_failures(kind: str, value: str) -> None:
    """Forget the failed logins of ``(kind, value)`` (a successful login)."""
    table().delete_item(Key=_fail_key(kind, value))


def kernel_uid(user_id: str, base: int, in_use: Callable[[int], bool] = lambda uid: False) -> int:
    """The numeric uid this user's kernels run under: ``base`` + a number taken once from an
    atomic counter and kept (put-if-absent) in ``KERNELUID#<user_id>``, so no two users share one
    (``in_use``: see :func:`take_kernel_uid`)."""
    key = {"pk": f"KERNELUID#{user_id}", "sk": "KERNELUID"}
    for _ in range(3):
        item = table().get_item(Key=key, ConsistentRead=True).get("Item")
        if item:
            return int(item["uid"])
        put_new({**key, "user_id": user_id, "uid": take_kernel_uid(base, in_use)})
    raise RuntimeError(f"no kernel uid for user {user_id}")


def known_kernel_uid(user_id: str) -> int | None:
    """The user's kernel uid if one was ever taken (see :func:`kernel_uid`), else None."""
    item = table().get_item(Key={"pk": f"KERNELUID#{user_id}", "sk": "KERNELUID"}, ConsistentRead=True).get("Item")
    return int(item["uid"]) if item else None


def bind_kernel_uid(user_id: str, uid: int) -> bool:
    """Make ``uid`` (a warm driver's fresh uid, taken from the same counter) the user's kernel uid,
    if the user has none yet (put-if-absent); False when the user already has one."""
    return put_new({"pk": f"KERNELUID#{user_id}", "sk": "KERNELUID", "user_id": user_id, "uid": uid})


#: How many counter numbers :func:`take_kernel_uid` skips (``in_use``) before it gives up.
MAX_UID_SKIPS = 10_000


def take_kernel_uid(base: int, in_use: Callable[[int], bool] = lambda uid: False) -> int:
    """A kernel uid nobody has: ``base`` + the next number of the users' uid counter, skipping
    numbers ``in_use`` says the host already knows (files left by an earlier table under the same
    user root: a new user must never inherit them)."""
    from chalicelib.store.counters import next_counter

    for _ in range(MAX_UID_SKIPS):
        uid = base + next_counter("kernel_uid")
        if not in_use(uid):
            return uid
    raise RuntimeError(f"no free kernel uid after {MAX_UID_SKIPS} tries from {base}")
