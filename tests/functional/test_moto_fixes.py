"""The embedded AWS's transactions and stream: cancelled transactions undo in place, pushes keep flowing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from moto.dynamodb.models.table import Table


def _table() -> Table:
    from chalicelib.config import settings
    from chalicelib.local import moto_fixes

    (table,) = moto_fixes.tables(settings().table_name)
    return table


def _ddb() -> Any:
    from chalicelib.store.aws import client

    return client("dynamodb")


def _name() -> str:
    from chalicelib.config import settings

    return settings().table_name


def _get(pk: str, sk: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = _ddb().get_item(TableName=_name(), Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item")
    return item


def test_a_cancelled_transaction_undoes_its_writes_in_place(aws: None) -> None:
    ddb, name = _ddb(), _name()
    ddb.put_item(TableName=name, Item={"pk": {"S": "A"}, "sk": {"S": "A"}, "n": {"N": "1"}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "C"}, "sk": {"S": "C"}})
    table = _table()
    stream_before = len(table.stream_shard.items) if table.stream_shard else 0
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": name, "Item": {"pk": {"S": "NEW"}, "sk": {"S": "NEW"}}}},
                {
                    "Update": {
                        "TableName": name,
                        "Key": {"pk": {"S": "A"}, "sk": {"S": "A"}},
                        "UpdateExpression": "SET n = :n",
                        "ExpressionAttributeValues": {":n": {"N": "2"}},
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": name,
                        "Key": {"pk": {"S": "C"}, "sk": {"S": "C"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    assert _table() is table, "the table object was replaced"
    assert "NEW" not in {str(h.value) for h in table.items}, "an empty partition was left behind"
    assert _get("NEW", "NEW") is None
    assert _get("A", "A") == {"pk": {"S": "A"}, "sk": {"S": "A"}, "n": {"N": "1"}}
    assert table.stream_shard is not None and len(table.stream_shard.items) == stream_before


def test_a_transaction_never_copies_the_table(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    ddb, name = _ddb(), _name()

    def refuse(self: Table, memo: Any) -> Any:
        raise AssertionError("the whole table was deep-copied")

    monkeypatch.setattr(Table, "__deepcopy__", refuse, raising=False)
    ddb.transact_write_items(
        TransactItems=[{"Put": {"TableName": name, "Item": {"pk": {"S": "B"}, "sk": {"S": "B"}}}}],
    )
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": name,
                        "Item": {"pk": {"S": "B"}, "sk": {"S": "B"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            ],
        )
    assert _get("B", "B") == {"pk": {"S": "B"}, "sk": {"S": "B"}}


def test_pushes_keep_flowing_after_a_409(aws: None) -> None:
    """A duplicate-name create (a cancelled transaction) used to leave the pump on a dead stream."""
    from chalicelib.errors import Conflict
    from chalicelib.local.aws import trim_consumed_stream
    from chalicelib.local.stream_pump import StreamPump
    from chalicelib.store import works as work_store

    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(event["Records"])
        return {"batchItemFailures": []}

    def work(work_id: str, name: str) -> dict[str, Any]:
        return {"work_id": work_id, "user_id": "u1", "name": name, "version": 1}

    pump = StreamPump(handler, _name(), trim=trim_consumed_stream)
    pump._open()
    work_store.insert_work(work("w1", "nightly"), "0001")
    pump.poll_once()
    assert "WORK#w1" in {r["dynamodb"]["Keys"]["pk"]["S"] for r in seen}
    with pytest.raises(Conflict):  # the route answers it as 409
        work_store.insert_work(work("w2", "nightly"), "0002")
    seen.clear()
    work_store.insert_work(work("w3", "hourly"), "0003")
    pump.poll_once()
    keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in seen]
    assert "WORK#w3" in keys and "WORK#w2" not in keys, keys
    # what the pump consumed is gone from the embedded AWS's memory
    shard = _table().stream_shard
    assert shard is not None and shard.items == []


def test_trim_keeps_sequence_numbers_and_drops_day_old_records(aws: None) -> None:
    from chalicelib.local import moto_fixes

    ddb, name = _ddb(), _name()
    for n in range(5):
        ddb.put_item(TableName=name, Item={"pk": {"S": f"T{n}"}, "sk": {"S": "T"}})
    table = _table()
    shard = table.stream_shard
    assert shard is not None
    numbers = [int(r.record["dynamodb"]["SequenceNumber"]) for r in shard.items]
    assert moto_fixes.trim_stream(table, numbers[-3]) == len(numbers) - 3
    assert [int(r.record["dynamodb"]["SequenceNumber"]) for r in shard.items] == numbers[-3:]
    # an iterator from before the trimmed range reads from the oldest record kept
    assert [int(r["dynamodb"]["SequenceNumber"]) for r in shard.get(numbers[0], 10)] == numbers[-3:]
    ddb.put_item(TableName=name, Item={"pk": {"S": "T9"}, "sk": {"S": "T"}})
    assert int(shard.items[-1].record["dynamodb"]["SequenceNumber"]) == numbers[-1] + 1
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)
    assert moto_fixes.trim_stream(table, None, now=later) == 4
    assert shard.items == []


_TYPED_ITEMS: list[dict[str, Any]] = [
    {"pk": {"S": "P"}, "sk": {"S": "1"}, "s": {"S": 'ü ✓ "quoted" \n'}, "e": {"S": ""}, "n": {"N": "-1.50E+3"}},
    {"pk": {"S": "P"}, "sk": {"S": "2"}, "t": {"BOOL": True}, "f": {"BOOL": False}, "z": {"NULL": True}},
    {"pk": {"S": "P"}, "sk": {"S": "3"}, "ss": {"SS": ["b", "a"]}, "ns": {"NS": ["2", "1.5"]}, "em": {"M": {}}},
    {"pk": {"S": "P"}, "sk": {"S": "4"}, "b": {"B": b"\x00\xff"}, "bs": {"BS": [b"x", b"y"]}, "el": {"L": []}},
    {
        "pk": {"S": "P"},
        "sk": {"S": "5"},
        "m": {"M": {"l": {"L": [{"S": "x"}, {"N": "1"}, {"M": {"deep": {"NULL": True}}}]}, "ss": {"SS": ["q"]}}},
        "mb": {"M": {"bin": {"B": b"\x01"}, "s": {"S": "next to binary"}}},
        "c": {"N": "7"},  # the update below sets it again: both reads see the same item
    },
]


def _answers() -> list[bytes]:
    """The raw bytes the embedded AWS answers to reads of the items above."""
    ddb, name = _ddb(), _name()
    bodies: list[bytes] = []

    def keep(http_response: Any, **_: Any) -> None:
        bodies.append(http_response.content)

    ddb.meta.events.register("after-call.dynamodb", keep)
    try:
        for item in _TYPED_ITEMS:
            ddb.get_item(TableName=name, Key={"pk": item["pk"], "sk": item["sk"]})
        ddb.query(TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "P"}})
        ddb.update_item(
            TableName=name,
            Key={"pk": {"S": "P"}, "sk": {"S": "5"}},
            UpdateExpression="SET c = :c",
            ExpressionAttributeValues={":c": {"N": "7"}},
            ReturnValues="ALL_NEW",
        )
    finally:
        ddb.meta.events.unregister("after-call.dynamodb", keep)
    return bodies


def test_the_attribute_value_fast_path_answers_the_same_bytes(aws: None) -> None:
    from chalicelib.local import moto_fixes

    ddb, name = _ddb(), _name()
    for item in _TYPED_ITEMS:
        ddb.put_item(TableName=name, Item=item)
    fast = _answers()
    moto_fixes.uninstall_serializer()
    try:
        slow = _answers()
    finally:
        moto_fixes.install()
    assert len(fast) == len(_TYPED_ITEMS) + 2
    assert fast == slow
    got = ddb.get_item(TableName=name, Key={"pk": {"S": "P"}, "sk": {"S": "4"}})["Item"]
    assert got["b"] == {"B": b"\x00\xff"} and sorted(got["bs"]["BS"]) == [b"x", b"y"]


def test_only_wire_form_values_take_the_fast_path() -> None:
    from chalicelib.local.moto_fixes import wire_attribute

    assert wire_attribute({"M": {"a": {"L": [{"S": "x"}]}}}) == {"M": {"a": {"L": [{"S": "x"}]}}}
    for odd in ({"B": "AAE="}, {"S": 1}, {"N": 2}, {"S": "a", "N": "1"}, {"M": {"a": {"B": b"x"}}}, {"L": [1]}, "S"):
        assert wire_attribute(odd) is None, odd


def test_the_pump_reads_the_stream_when_the_table_is_written_not_on_a_timer(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the embedded AWS's write event the pump sleeps until a write (a minute here), not 20 ms."""
    import threading

    from chalicelib.local import stream_pump
    from chalicelib.local.aws import TABLE_WRITTEN, serialize_dynamodb
    from chalicelib.store import works as work_store

    serialize_dynamodb()
    monkeypatch.setattr(stream_pump, "IDLE_READ_SECONDS", 60.0)
    got = threading.Event()
    reads = [0]

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if any(r["dynamodb"]["Keys"]["pk"]["S"] == "WORK#w9" for r in event["Records"]):
            got.set()
        return {"batchItemFailures": []}

    pump = stream_pump.StreamPump(handler, _name(), wake=TABLE_WRITTEN)
    counted = pump.poll_once

    def poll_once() -> bool:
        reads[0] += 1
        return counted()

    monkeypatch.setattr(pump, "poll_once", poll_once)
    pump.start()
    try:
        assert pump.ready.wait(10)
        _ddb().get_item(TableName=_name(), Key={"pk": {"S": "none"}, "sk": {"S": "none"}})  # a read rings nothing
        idle_reads = reads[0]
        work_store.insert_work({"work_id": "w9", "user_id": "u1", "name": "rung", "version": 1}, "0009")
        assert got.wait(10), "the write did not wake the pump"
        assert idle_reads <= 2  # the first read, and at most one for a write before the test's own
    finally:
        pump.stop()
    assert not pump.is_alive()  # stop wakes it too


def test_the_in_process_stream_read_answers_what_the_api_answers(aws: None) -> None:
    """``read_stream_records`` skips the request, not the records: same records, copies of them."""
    from chalicelib.local.aws import read_stream_records
    from chalicelib.store.aws import client

    ddb, name, streams = _ddb(), _name(), client("dynamodbstreams")
    arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]

    def iterator() -> str:
        got: str = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        return got

    ddb.put_item(TableName=name, Item={"pk": {"S": "R1"}, "sk": {"S": "R"}, "n": {"N": "1"}, "m": {"M": {}}})
    ddb.update_item(
        TableName=name,
        Key={"pk": {"S": "R1"}, "sk": {"S": "R"}},
        UpdateExpression="SET n = :n, tags = :t",
        ExpressionAttributeValues={":n": {"N": "2"}, ":t": {"SS": ["a", "b"]}},
    )
    ddb.delete_item(TableName=name, Key={"pk": {"S": "R1"}, "sk": {"S": "R"}})
    over_api = streams.get_records(ShardIterator=iterator(), Limit=10)["Records"]
    direct = read_stream_records(iterator(), 10)
    assert "NextShardIterator" in direct
    for record in [*over_api, *direct["Records"]]:
        record["dynamodb"].pop("ApproximateCreationDateTime", None)  # a datetime one way, a date string the other
    assert direct["Records"] == over_api
    mine = [r for r in direct["Records"] if r["dynamodb"]["Keys"]["pk"] == {"S": "R1"}]
    assert [r["eventName"] for r in mine] == ["INSERT", "MODIFY", "REMOVE"]
    assert mine[1]["dynamodb"]["NewImage"]["tags"] == {"SS": ["a", "b"]}
    mine[0]["dynamodb"]["NewImage"]["n"]["N"] = "99"  # a copy: the stream itself is untouched
    again = [r for r in read_stream_records(iterator(), 10)["Records"] if r["dynamodb"]["Keys"]["pk"] == {"S": "R1"}]
    assert again[0]["dynamodb"]["NewImage"]["n"] == {"N": "1"}
