"""Where real shared data lives (tests, benchmarks) and where outputs go by default."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(os.environ.get("TAGFOLD_OUT", "out"))


def shared_data() -> Path:
    """../shared/data beside the project, or $TAGFOLD_SHARED_DATA. Raises if absent."""
    path = Path(os.environ.get("TAGFOLD_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        raise FileNotFoundError(f"shared data not found at {path} (set TAGFOLD_SHARED_DATA)")
    return path
