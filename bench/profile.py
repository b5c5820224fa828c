"""Sample a running broker with py-spy while a scenario loads it, and summarise where its time
goes: the frames with the most samples on top of the stack (self) and anywhere on it (total)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.procs import Procs

if TYPE_CHECKING:
    from bench.context import Bench

_FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


# The process's own frames (start-up, the server loop), not broker code per request.
PROCESS_FRAMES = ("broker/__main__.py", "broker/serve.py")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start(procs: Procs, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = py_spy()
    if exe is None:
        return None
    return procs.start("py-spy", [exe, "record", "--pid", str(pid), "--duration",
                                  str(max(1, round(seconds))), "--rate", "250", "--nonblocking",
                                  "--format", "raw", "--output", str(out)])


def sample(b: Bench, name: str, pid: int, run: Callable[[], object]) -> None:
    """Call `run` (one more run of a scenario) with py-spy sampling process `pid` through it,
    and keep the summary under `name`: a separate run, so that the sampling slows no measured
    one."""
    raw = b.workdir / f"profile-{name.replace(' ', '-')}.txt"
    spy = start(b.procs, pid, b.options.warmup + b.options.duration, raw)
    if spy is None:
        missing = "--profile: py-spy is not installed (pip install -e '.[bench]')"
        if missing not in b.notes:
            b.notes.append(missing)
        return
    run()
    spy.wait(30)
    b.profiles[name] = summarise(raw) if raw.exists() else b.procs.log_tail("py-spy")


def _split(frame: str) -> tuple[str, str]:
    """(function, file path shortened to its package) of one py-spy frame."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    parts = Path(m.group("file")).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    elif "broker" in parts:
        parts = parts[parts.index("broker"):]
    return m.group("fn"), "/".join(parts)


def _short(fn: str, path: str) -> str:
    return f"{fn} ({'/'.join(path.split('/')[-2:])})"


def _layer(path: str) -> str:
    head = path.split("/", 1)[0].removesuffix(".py")
    if head.startswith("<frozen") or head in ("", "asyncio", "json", "uuid", "re", "typing"):
        return "python stdlib"
    return head


def summarise(raw: Path, top: int = 12) -> str:
    """Where the broker's Python time went: by layer (the package of the innermost frame), the
    innermost frames themselves, and the broker's own functions with everything they call."""
    own: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_split(f) for f in stack.split(";") if f]
        if not frames or not count.isdigit():
            continue
        n = int(count)
        samples += n
        fn, path = frames[-1]
        own[_short(fn, path)] += n
        layers[_layer(path)] += n
        for name in {_short(f, p) for f, p in frames
                     if p.startswith("broker/") and p not in PROCESS_FRAMES}:
            ours[name] += n
    if not samples:
        return "no samples"

    def share(counter: Counter[str], limit: int) -> list[str]:
        return [f"  {100 * n / samples:5.1f}%  {k}" for k, n in counter.most_common(limit)]

    return "\n".join([f"{samples} samples of the broker's Python stacks (idle excluded)",
                      "by layer (package of the innermost frame):", *share(layers, 8),
                      "innermost frames:", *share(own, top),
                      "broker functions, with what they call:", *share(ours, top)])
