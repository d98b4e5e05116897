"""Where downloads live on the host (wheels, sdists, Debian packages, metadata): $SWELEGO_CACHE,
else $XDG_CACHE_HOME/swelego, else ~/.cache/swelego."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("SWELEGO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "swelego")
    return Path(root)
