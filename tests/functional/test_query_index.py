"""The embedded AWS's query indexes (chalicelib.local.query_index): every Query answers exactly what
moto's walk over the whole table answers, through puts, updates that move an item between index
keys, deletes, batch writes, failed conditions and cancelled transactions."""

from __future__ import annotations

import random
from typing import Any

import pytest
from moto.dynamodb.models.table import Table

from chalicelib.local import query_index


def _ddb() -> Any:
    from chalicelib.store.aws import client

    return client("dynamodb")


def _name() -> str:
    from chalicelib.config import settings

    return settings().table_name


def _table() -> Table:
    from chalicelib.local import moto_fixes

    (table,) = moto_fixes.tables(_name())
    return table


def _item(rng: random.Random, pk: str, sk: str) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": {"S": pk}, "sk": {"S": sk}, "n": {"N": str(rng.randint(0, 9))}}
    if rng.random() < 0.7:
        item.update(gsi1pk={"S": f"Q#{rng.randint(0, 3)}"}, gsi1sk={"S": f"{rng.randint(0, 99):03d}"})
    if rng.random() < 0.5:
        item.update(gsi2pk={"S": f"U#{rng.randint(0, 2)}"}, gsi2sk={"S": f"{rng.randint(0, 99):03d}"})
    return item


def _write(ddb: Any, name: str, rng: random.Random) -> None:
    pk, sk = f"P#{rng.randint(0, 5)}", f"S#{rng.randint(0, 7)}"
    key = {"pk": {"S": pk}, "sk": {"S": sk}}
    roll = rng.random()
    try:
        if roll < 0.3:
            ddb.put_item(TableName=name, Item=_item(rng, pk, sk))
        elif roll < 0.5:  # moves the item to another queue, or out of the index
            if rng.random() < 0.5:
                ddb.update_item(
                    TableName=name,
                    Key=key,
                    UpdateExpression="SET gsi1pk = :q, gsi1sk = :s",
                    ExpressionAttributeValues={":q": {"S": f"Q#{rng.randint(0, 3)}"}, ":s": {"S": "050"}},
                    ConditionExpression="attribute_exists(pk)",
                )
            else:
                ddb.update_item(TableName=name, Key=key, UpdateExpression="REMOVE gsi1pk, gsi1sk")
        elif roll < 0.6:
            ddb.delete_item(TableName=name, Key=key)
        elif roll < 0.75:
            requests = [{"PutRequest": {"Item": _item(rng, f"P#{rng.randint(0, 5)}", f"S#{i}")}} for i in range(3)]
            requests.append({"DeleteRequest": {"Key": {"pk": {"S": f"P#{rng.randint(0, 5)}"}, "sk": {"S": "S#7"}}}})
            ddb.batch_write_item(RequestItems={name: requests})
        else:  # a transaction that is cancelled half the time (its put and update roll back)
            ddb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": name, "Item": _item(rng, pk, f"S#{rng.randint(2, 7)}")}},
                    {
                        "Update": {
                            "TableName": name,
                            "Key": {"pk": {"S": f"P#{rng.randint(0, 5)}"}, "sk": {"S": "S#0"}},
                            "UpdateExpression": "SET gsi1pk = :q, gsi1sk = :s",
                            "ExpressionAttributeValues": {":q": {"S": "Q#0"}, ":s": {"S": "001"}},
                        }
                    },
                    {
                        "ConditionCheck": {
                            "TableName": name,
                            "Key": {"pk": {"S": "P#0"}, "sk": {"S": "S#1"}},
                            "ConditionExpression": "attribute_exists(pk) OR n = :x",
                            "ExpressionAttributeValues": {":x": {"N": "100" if rng.random() < 0.5 else "0"}},
                        }
                    },
                ]
            )
    except (ddb.exceptions.ConditionalCheckFailedException, ddb.exceptions.TransactionCanceledException):
        pass


def _queries(rng: random.Random) -> list[dict[str, Any]]:
    queue = {"IndexName": "gsi1", "KeyConditionExpression": "gsi1pk = :k", "ExpressionAttributeValues": {}}
    queue["ExpressionAttributeValues"] = {":k": {"S": f"Q#{rng.randint(0, 3)}"}}
    ranged = {
        "IndexName": "gsi2",
        "KeyConditionExpression": "gsi2pk = :k AND gsi2sk > :s",
        "ExpressionAttributeValues": {":k": {"S": f"U#{rng.randint(0, 2)}"}, ":s": {"S": "040"}},
        "ScanIndexForward": False,
    }
    table = {
        "KeyConditionExpression": "pk = :k AND begins_with(sk, :s)",
        "ExpressionAttributeValues": {":k": {"S": f"P#{rng.randint(0, 5)}"}, ":s": {"S": "S#"}},
        "FilterExpression": "n > :n",
    }
    table["ExpressionAttributeValues"][":n"] = {"N": "3"}
    return [queue, {**queue, "Limit": 2}, ranged, table, {**table, "Limit": 1, "ConsistentRead": True}]


def _all_pages(ddb: Any, name: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    pages, start = [], None
    while True:
        page = ddb.query(TableName=name, **query, **({"ExclusiveStartKey": start} if start else {}))
        page.pop("ResponseMetadata", None)
        pages.append(page)
        start = page.get("LastEvaluatedKey")
        if not start:
            return pages


def test_indexed_queries_answer_what_moto_walks_to(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    ddb, name, rng = _ddb(), _name(), random.Random(7)
    narrowed = 0
    real_candidates = query_index._candidates

    def counting(table: Table, bound: Any) -> Any:
        nonlocal narrowed
        found = real_candidates(table, bound)
        narrowed += found is not None
        return found

    for step in range(300):
        _write(ddb, name, rng)
        if step % 5:
            continue
        for query in _queries(rng):
            with monkeypatch.context() as patch:
                patch.setattr(query_index, "_candidates", lambda table, bound: None)  # moto's own walk
                expected = _all_pages(ddb, name, query)
            with monkeypatch.context() as patch:
                patch.setattr(query_index, "_candidates", counting)
                assert _all_pages(ddb, name, query) == expected, query
    assert narrowed > 200  # the indexed path really answered (not the fallback)
    gsi1 = {(i["pk"]["S"], i["sk"]["S"]) for i in ddb.scan(TableName=name)["Items"] if "gsi1pk" in i}
    assert gsi1  # the workload left items in the queue index


def test_a_write_it_cannot_follow_rebuilds_the_index(aws: None) -> None:
    ddb, name = _ddb(), _name()
    ddb.put_item(TableName=name, Item={"pk": {"S": "A"}, "sk": {"S": "A"}, "gsi1pk": {"S": "Q"}, "gsi1sk": {"S": "1"}})
    query = {
        "IndexName": "gsi1",
        "KeyConditionExpression": "gsi1pk = :k",
        "ExpressionAttributeValues": {":k": {"S": "Q"}},
    }
    assert [i["pk"]["S"] for i in ddb.query(TableName=name, **query)["Items"]] == ["A"]
    ddb.execute_statement(Statement=f"UPDATE \"{name}\" SET gsi1pk='R' WHERE pk='A' AND sk='A'")  # PartiQL
    assert ddb.query(TableName=name, **query)["Items"] == []
    query["ExpressionAttributeValues"] = {":k": {"S": "R"}}
    assert [i["pk"]["S"] for i in ddb.query(TableName=name, **query)["Items"]] == ["A"]


def test_a_query_reads_only_its_key(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    ddb, name = _ddb(), _name()
    for i in range(50):
        ddb.put_item(
            TableName=name,
            Item={"pk": {"S": f"P#{i}"}, "sk": {"S": "x"}, "gsi1pk": {"S": f"Q#{i % 10}"}, "gsi1sk": {"S": str(i)}},
        )
    walked: list[int] = []
    original = Table.all_items

    def all_items(self: Table) -> Any:
        found = original(self)
        walked.append(len(found))
        return found

    monkeypatch.setattr(Table, "all_items", all_items)
    got = ddb.query(
        TableName=name,
        IndexName="gsi1",
        KeyConditionExpression="gsi1pk = :k",
        ExpressionAttributeValues={":k": {"S": "Q#3"}},
    )
    assert sorted(i["pk"]["S"] for i in got["Items"]) == sorted(f"P#{i}" for i in range(3, 50, 10))
    got = ddb.query(TableName=name, KeyConditionExpression="pk = :k", ExpressionAttributeValues={":k": {"S": "P#7"}})
    assert [i["pk"]["S"] for i in got["Items"]] == ["P#7"]
    assert walked == []  # neither query walked the table
