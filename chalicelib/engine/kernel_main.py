"""Entry of a kernel process: ``python -I -u kernel_main.py --fd N --user-id U [--uid N] ...``.

Started as root by the supervisor. ``-I`` keeps the environment and the current folder out of
``sys.path``; the project folder is added here, then :func:`sandbox.enter` fences the process in
and drops to the user's uid before the kernel (and with it pyspark and any user code) is imported.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chalicelib.engine import sandbox

if __name__ == "__main__":
    arguments = sandbox.enter(sys.argv[1:])
    from chalicelib.engine.kernel import main

    sys.exit(main(arguments.fd))
