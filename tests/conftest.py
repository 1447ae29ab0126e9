"""Shared test configuration.

The repository root is put on ``sys.path`` (and on ``PYTHONPATH`` for the
processes the tests start) so that ``twistd`` finds ``twisted/plugins`` and the
checkout, not an older installed copy, is what runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)

pytest_plugins = ["tests.peers.fixtures"]
