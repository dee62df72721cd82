"""spark-submit entry point of the sparkgate engine.

spark-submit needs a Python file as its primary resource; this one runs the engine package
(``chalicelib.engine``) from the bundle given with ``--py-files``, exactly as
``python -m chalicelib.engine ARGS...`` would locally.
"""

import runpy

if __name__ == "__main__":
    runpy.run_module("chalicelib.engine", run_name="__main__", alter_sys=True)
