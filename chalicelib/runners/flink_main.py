"""Entry of a sandboxed Flink run: ``python -I -u flink_main.py <kernel arguments> -- --fd N [--artefact-fd M]``.

Started as root by :mod:`chalicelib.runners.flink`, like an engine kernel (``kernel_main.py``): ``-I``
keeps the environment and the current folder out of ``sys.path``; :func:`sandbox.enter` takes the
arguments before ``--``, fences the process in and drops to the owner's uid before pyflink (and with
it any user code) is imported. The arguments after ``--`` are :mod:`chalicelib.runners.flink_kernel`'s.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chalicelib.engine import sandbox

if __name__ == "__main__":
    arguments = sys.argv[1:]
    cut = arguments.index("--") if "--" in arguments else len(arguments)
    sandbox.enter(arguments[:cut])
    from chalicelib.runners.flink_kernel import main

    sys.exit(main(arguments[cut + 1 :]))
