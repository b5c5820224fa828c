"""`python -m bench`: the broker against its floor and its peers, in one run on this machine.

Starts a private redis-server, the broker (`python -m broker serve`) and a floor app as
subprocesses on loopback, runs each scenario for a bounded time, prints a table and writes
JSON. Everything it started is stopped at the end, on Ctrl-C and on errors too.

    python -m bench                      # every scenario (about 6 minutes on 2 cores)
    python -m bench --quick              # seconds per scenario, small data: what CI runs
    python -m bench --scenarios contract,submit --duration 5 --json out.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from bench import dispatch, http, lifecycle, results, storage
from bench.context import Bench, Options
from bench.peers import runner
from bench.procs import Procs, RedisServer
from bench.results import Row

Scenario = Callable[[Bench], None]

SCENARIOS: dict[str, Scenario] = {
    "floor": http.floor,
    "contract": http.contract,
    "submit": http.submit,
    "lifecycle": lifecycle.ours,
    **{name: runner.scenario(name) for name in runner.PEERS},
    "dispatch": dispatch.dispatch,
    "data": storage.data,
    "depth": storage.depth,
    "processes": http.processes,
}
GROUPS = {"peers": list(runner.PEERS), "all": list(SCENARIOS)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="short runs, 20 MB of data, depth 1,000 vs 20,000 (for CI)")
    p.add_argument("--scenarios", default="all",
                   help=f"comma-separated, in this order: {', '.join(SCENARIOS)}; "
                        "'peers' names every peer (default: all)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds each measured run lasts (default 10, quick 1)")
    p.add_argument("--concurrency", type=int, default=16,
                   help="requests the load generator keeps in flight (default 16)")
    p.add_argument("--workers", type=int, default=2,
                   help="worker processes in the lifecycle scenarios, ours and each peer's")
    p.add_argument("--batch", type=int, default=50,
                   help="jobs per request in the batched lifecycle (default 50)")
    p.add_argument("--data-mb", type=int, default=None,
                   help="size of the data scenario's upload (default 1024, quick 20)")
    p.add_argument("--profile", action="store_true",
                   help="sample the broker with py-spy in extra contract, submit, lifecycle runs")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--markdown", type=Path, default=None,
                   help="write the README's performance section (command, machine, table)")
    p.add_argument("--keep", action="store_true",
                   help="keep the working directory (logs, profiles) instead of removing it")
    return p


def _scenarios(spec: str) -> list[str]:
    wanted: set[str] = set()
    for name in filter(None, (n.strip() for n in spec.split(","))):
        if name in GROUPS:
            wanted.update(GROUPS[name])
        elif name in SCENARIOS:
            wanted.add(name)
        else:
            raise SystemExit(f"unknown scenario {name!r}; choose from "
                             f"{', '.join([*SCENARIOS, *GROUPS])}")
    return [n for n in SCENARIOS if n in wanted]


def _options(args: argparse.Namespace) -> Options:
    quick = bool(args.quick)
    duration = args.duration if args.duration is not None else (1.0 if quick else 10.0)
    data_mb = args.data_mb if args.data_mb is not None else (20 if quick else 1024)
    return Options(quick=quick, duration=duration, warmup=0.3 if quick else 1.0,
                   concurrency=args.concurrency, workers=args.workers, batch=args.batch,
                   depth=(1_000, 20_000) if quick else (1_000, 1_000_000),
                   data_bytes=data_mb * 1024 * 1024, profile=bool(args.profile))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(names: Sequence[str], options: Options, workdir: Path) -> Bench:
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    procs = Procs(workdir / "logs")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started ignoring it
    try:
        b = Bench(options, workdir, procs, RedisServer(procs, workdir / "redis"))
        for name in names:
            started = time.monotonic()
            print(f"-- {name}", file=sys.stderr, flush=True)
            try:
                SCENARIOS[name](b)
            except Exception as exc:  # one scenario failing must not lose the others
                traceback.print_exc()
                b.add(Row(name, "(scenario failed)", None, note=f"{type(exc).__name__}: "
                                                                f"{str(exc)[:160]}"))
            finally:
                procs.stop_all_but(b.redis.proc)
            print(f"   {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
        if "lifecycle" in names:
            lifecycle.compare(b)
        return b
    finally:
        procs.stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = _scenarios(args.scenarios)
    options = _options(args)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    start_load = os.getloadavg()[0]
    try:
        b = run(names, options, workdir)
    except KeyboardInterrupt:
        print("interrupted: every process this run started is stopped", file=sys.stderr)
        return 130
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    facts = results.machine(b.redis.version)
    print(f"\nmachine: {facts['cpu']}, {facts['cores']} cores, {facts['memory']}, "
          f"Python {facts['python']}, Redis {facts['redis']}, {facts['date']}; load average "
          f"{start_load:.2f} at start, {facts['load_average'][0]:.2f} at end")
    print(results.table(b.rows))
    for note in b.notes:
        print(f"note: {note}")
    for name, text in b.profiles.items():
        print(f"\nprofile of the broker during {name}:\n{text}")
    if args.json:
        opts = {**options.__dict__, "scenarios": names, "load_average_at_start": start_load}
        results.write_json(args.json, facts, opts, b.rows,
                           b.notes + [f"profile {k}:\n{v}" for k, v in b.profiles.items()])
    if args.markdown:
        command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
        args.markdown.write_text(results.section(facts, command, b.rows))
    if args.keep:
        print(f"logs and profiles kept in {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
