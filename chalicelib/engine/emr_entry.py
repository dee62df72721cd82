"""The EMR step's entry script (uploaded as ``engine_main.py`` next to the engine zip)."""

import sys

from chalicelib.engine.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
