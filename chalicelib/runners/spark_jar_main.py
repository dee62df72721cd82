"""Entry of a sandboxed SPARK_JAR run: ``python -I -u spark_jar_main.py <kernel arguments> -- <spark-submit line>``.

Started as root by :mod:`chalicelib.runners.spark_jar`, like an engine kernel (``kernel_main.py``):
:func:`sandbox.enter` takes the arguments before ``--`` (``--fd`` is the jar, an already open file),
fences the process in and drops to the owner's uid. Only then is the jar copied into the run's own
folder (``$TMPDIR``) and ``spark-submit`` exec'd on the copy: spark-submit (and the launcher JVM it
starts first) reopens the jar by path, which ``/proc/self/fd/N`` does not survive across its processes.
"""

import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chalicelib.engine import sandbox

if __name__ == "__main__":
    arguments = sys.argv[1:]
    cut = arguments.index("--") if "--" in arguments else len(arguments)
    args = sandbox.enter(arguments[:cut])
    command = arguments[cut + 1 :]
    folder = Path(os.environ["TMPDIR"])
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    jar = folder / "app.jar"
    with os.fdopen(args.fd, "rb") as source, jar.open("wb") as copy:
        shutil.copyfileobj(source, copy)
    command[command.index("{jar}")] = str(jar)
    os.execv(command[0], command)
