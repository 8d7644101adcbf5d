"""MLproject entry point `sweep`: the same command as `aeclust sweep`."""

import sys
from pathlib import Path

# mlflow run starts this file from the project folder, where aeclust may not be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aeclust.cli import sweep  # noqa: E402

if __name__ == "__main__":
    sweep(prog_name="aeclust sweep")
