"""Geospatial part of the Spark engine: Arctern-compatible ST_ functions and map rendering.

Usage inside the engine (the kernel does this; ``ops`` runs the geo operations of a Job)::

    from chalicelib.engine.geo import register_st_functions
    from chalicelib.engine.geo.ops import render
    register_st_functions(spark)
    answer = render(spark, "pointmap", sql, params)  # {"png": bytes, ...}
"""

from chalicelib.engine.geo._arrow import GeoFunctionError
from chalicelib.engine.geo.functions import ST_FUNCTION_NAMES, register_st_functions

__all__ = ["ST_FUNCTION_NAMES", "GeoFunctionError", "register_st_functions"]
