"""BullMQ, where Node is on PATH: its npm package is installed at run time into a scratch folder
under the system temp directory (kept there for the next run)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.peers import Unavailable

CONCURRENCY = 50  # as in bullmq_peer.js
NODE = shutil.which("node") or "node"
SCRIPT = Path(__file__).with_name("bullmq_peer.js")
SCRATCH = Path(tempfile.gettempdir()) / "bench-bullmq"


def prepare(quick: bool) -> Path:
    """The node_modules folder holding bullmq, installing it when needed; quick runs use only
    an install already there (npm may take a minute)."""
    if shutil.which("node") is None:
        raise Unavailable("node is not on PATH")
    modules = SCRATCH / "node_modules"
    if (modules / "bullmq" / "package.json").exists():
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not on PATH")
    if quick:
        raise Unavailable("bullmq not installed yet; a full run installs it")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
                               "bullmq@5"], cwd=SCRATCH, capture_output=True, text=True,
                              timeout=300, check=False)
    except subprocess.TimeoutExpired:
        raise Unavailable("npm install bullmq took over 5 minutes") from None
    if done.returncode != 0 or not (modules / "bullmq").exists():
        raise Unavailable(f"npm install bullmq failed: {done.stderr.strip()[-160:]}")
    return modules
