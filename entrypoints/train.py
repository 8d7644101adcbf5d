"""MLproject entry point `train`: the same command as `aeclust train`."""

import sys
from pathlib import Path

# mlflow run starts this file from the project folder, where aeclust may not be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aeclust.cli import train  # noqa: E402

if __name__ == "__main__":
    train(prog_name="aeclust train")
