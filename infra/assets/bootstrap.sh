#!/bin/bash
# EMR bootstrap action (runs on every node, before Spark starts): installs Python 3.11, the version
# sparkgate is written for (EMR 7's default python3 is 3.9), and the engine's Python dependencies.
# The cluster's spark-env sets PYSPARK_PYTHON=/usr/bin/python3.11. Keep the package list in step
# with requirements-engine.txt (pyspark itself comes with EMR).
set -euo pipefail

PY=/usr/bin/python3.11
if [[ ! -x "$PY" ]] || ! "$PY" -m pip --version >/dev/null 2>&1; then
    sudo dnf install -y python3.11 python3.11-pip
fi
sudo "$PY" -m pip install --quiet 'pandas<3' pyarrow shapely Pillow numpy boto3
