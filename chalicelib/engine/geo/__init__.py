"""Geospatial part of the Spark engine: Arctern-compatible ST_ functions and map rendering.

Usage inside the engine::

    from chalicelib.engine.geo import register_st_functions, render_map
    register_st_functions(spark)
    png = render_map("pointmap", spark.sql(sql), params)
"""

from chalicelib.engine.geo._arrow import GeoFunctionError
from chalicelib.engine.geo.functions import ST_FUNCTION_NAMES, register_st_functions

__all__ = ["ST_FUNCTION_NAMES", "GeoFunctionError", "register_st_functions"]
