#!/bin/bash
# EMR bootstrap action (runs as hadoop on every node, before Spark starts):
# installs the Python dependencies of the sparkgate engine (chalicelib/engine).
# Keep this list in step with the engine's local requirements.
set -euo pipefail

if ! python3 -m pip --version >/dev/null 2>&1; then
    sudo dnf install -y python3-pip
fi
sudo python3 -m pip install --quiet 'pandas<3' pyarrow shapely Pillow numpy boto3
