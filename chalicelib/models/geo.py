"""Geo surface (spec 004, Arctern's web server): request bodies.

Declared for the OpenAPI document; ``chalicelib.geo`` checks them (its messages are the contract).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class GeoModel(BaseModel):
    """Arctern bodies tolerate fields they do not know."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ScopeRequest(GeoModel):
    """``POST /scope``: a uuid hex name when the body has none."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"scope": "scope1"}]})

    scope: str | None = None


class CommandRequest(GeoModel):
    """``POST /command``: Python in the scope's namespace."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["scope", "command"],
            "examples": [{"scope": "scope1", "session": "spark", "command": "print(1)"}],
        }
    )

    scope: str
    session: str | None = None
    command: str


class SessionRequest(GeoModel):
    """``POST /session``: a named SparkSession in a scope."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["scope", "session"],
            "examples": [
                {
                    "scope": "scope1",
                    "session": "session1",
                    "app_name": "arctern",
                    "master-addr": "local[*]",
                    "configs": {"spark.executorEnv.PYSPARK_PYTHON": "/usr/bin/python3"},
                    "envs": {},
                }
            ],
        }
    )

    scope: str
    session: str
    app_name: str | None = None
    master_addr: str | None = Field(None, alias="master-addr")
    configs: dict[str, Any] | None = None
    envs: dict[str, Any] | None = None


class TableSpec(GeoModel):
    """One table of ``/loadfile`` or ``/createtable``."""

    name: str
    format: str | None = Field(None, examples=["csv"])
    path: str | None = None
    options: dict[str, Any] | None = None
    schema_: list[dict[str, str]] | None = Field(None, alias="schema")
    sql: str | None = None


class TablesRequest(GeoModel):
    """``POST /loadfile`` and ``POST /createtable``."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["scope", "session", "tables"],
            "examples": [
                {
                    "scope": "scope1",
                    "session": "session1",
                    "tables": [
                        {
                            "name": "raw_data",
                            "format": "csv",
                            "path": "/data/0_5M_nyc_taxi_and_building.csv",
                            "options": {"header": "True", "delimiter": ","},
                            "schema": [{"VendorID": "string"}, {"pickup_longitude": "double"}],
                        }
                    ],
                }
            ],
        }
    )

    scope: str
    session: str
    tables: list[TableSpec]


class QueryRequest(GeoModel):
    """``POST /query``."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["scope", "session", "sql"],
            "examples": [{"scope": "scope1", "session": "session1", "sql": "select * from raw_data limit 1"}],
        }
    )

    scope: str
    session: str
    sql: str
    collect_result: str | None = Field(None, examples=["1"])


class MapRequest(GeoModel):
    """``POST /pointmap``, ``/heatmap``, ``/choropleth``, ``/weighted`` ... : SQL plus render parameters."""

    model_config = ConfigDict(
        json_schema_extra={
            "required": ["scope", "session", "sql"],
            "examples": [
                {
                    "scope": "scope1",
                    "session": "session1",
                    "sql": "select ST_Point(pickup_longitude, pickup_latitude) as point from raw_data",
                    "params": {
                        "width": 1024,
                        "height": 896,
                        "bounding_box": [-73.998427, 40.730309, -73.954348, 40.780816],
                        "coordinate_system": "EPSG:4326",
                        "point_color": "#2DEF4A",
                        "point_size": 3,
                        "opacity": 0.5,
                    },
                }
            ],
        }
    )

    scope: str
    session: str
    sql: str
    params: dict[str, Any] | None = None
