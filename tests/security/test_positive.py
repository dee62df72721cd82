"""The fences do not get in an ordinary user's way: SQL, Python (with files in the user's own area),
a geo query, maps, /command, and work runs from the shared root and from the user's own area all still
succeed."""

from __future__ import annotations

import base64
import io

from PIL import Image

from tests.security.conftest import Tenants

BOX = [-74.0, 40.7, -73.9, 40.8]


def test_sql_still_runs(tenants: Tenants) -> None:
    outcome = tenants.alice.run("select 41 + 1 as answer, 'ok' as word", "sql")
    assert outcome.status == "Succeed", outcome.error
    assert outcome.rows() == [[42, "ok"]]


def test_python_still_runs_and_keeps_files_in_the_users_own_area(tenants: Tenants) -> None:
    code = (
        "import os\n"
        "df = spark.range(10).selectExpr('id', 'id * id as sq')\n"
        "with open('notes.txt', 'w') as fh:\n"
        "    fh.write('kept in my area')\n"
        "print('area file:', open(os.path.join(os.path.expanduser('~'), 'notes.txt')).read())\n"
        "print('rows', df.count())\n"
        "df.where('id >= 8')"
    )
    outcome = tenants.alice.run(code)
    assert outcome.status == "Succeed", outcome.error
    assert "area file: kept in my area" in outcome.log and "rows 10" in outcome.log
    assert outcome.rows() == [[8, 64], [9, 81]]
    assert (tenants.layout.area(tenants.alice.user_id) / "notes.txt").read_text() == "kept in my area"


def _png(answer: dict[str, object], size: tuple[int, int]) -> None:
    image = Image.open(io.BytesIO(base64.b64decode(str(answer["result"]))))
    assert image.size == size and image.mode == "RGBA"
    assert image.getchannel("A").getbbox() is not None, "the map is blank"


def test_geo_query_maps_and_command_still_work(tenants: Tenants) -> None:
    alice, scope = tenants.alice, tenants.scope
    status, answer = alice.geo("POST", "/query", {"scope": scope, "sql": "select count(*) as n from points"})
    assert status == 200 and answer["result"] == [40], answer
    params = {"width": 64, "height": 64, "bounding_box": BOX, "point_color": "#2DEF4A", "point_size": 3}
    body = {"scope": scope, "sql": "select ST_Point(x, y) as point from points", "params": params}
    status, answer = alice.geo("POST", "/pointmap", body)
    assert status == 200, answer
    _png(answer, (64, 64))
    icon = {"width": 64, "height": 64, "bounding_box": BOX, "icon_path": str(tenants.layout.shared / "icon.png")}
    status, answer = alice.geo("POST", "/icon_viz", {**body, "params": icon})
    assert status == 200, answer
    _png(answer, (64, 64))
    status, answer = alice.geo("POST", "/command", {"scope": scope, "command": "x = 20\nprint('hi')\nx + 22"})
    assert status == 200 and answer["output"] == "hi\n" and answer["result"] == 42, answer


def test_a_sql_work_from_the_shared_root_runs(tenants: Tenants) -> None:
    script = tenants.layout.shared / "rollup.sql"
    task, outcome = tenants.alice.run_work("SPARK_SQL", str(script), ["-Dn=7", "-Danswer=42"])
    assert task["status"] == 0, task
    assert outcome is not None and outcome.status == "Succeed", outcome
    assert outcome.rows(0) == [[7]] and outcome.rows(1) == [[42]]


def test_a_pyspark_work_from_the_users_own_area_runs(tenants: Tenants) -> None:
    area = tenants.layout.area(tenants.alice.user_id)
    script = area / "hello.py"
    write = (
        "import os\n"
        f"with open({str(script)!r}, 'w') as fh:\n"
        "    fh.write(\"import sys\\nprint('argv', sys.argv[1:])\\nprint('count', spark.range(5).count())\\n\")\n"
        "print('written')"
    )
    wrote = tenants.alice.run(write)
    assert wrote.status == "Succeed", wrote.error
    task, outcome = tenants.alice.run_work("PYSPARK", str(script), ["a", "b"])
    assert task["status"] == 0, task
    assert outcome is not None and "argv ['a', 'b']" in outcome.log and "count 5" in outcome.log, outcome
