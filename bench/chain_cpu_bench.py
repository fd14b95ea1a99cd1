"""CPU per message of the ingest chain's own Python, no servers: one tree's code beside another's.

    .venv/bin/python -m bench.chain_cpu_bench [--base /tmp/base] [--new .] [--rounds 9] [--batch 500]
                                              [--seconds 0.1] [--profile KIND:STEP]
                                              [--instructions KIND:STEP[,KIND:STEP…]]

Each tree's code runs in a subprocess of its own (cwd = the tree, so `import ingest` is that tree's),
both started at once and kept. Every round asks each child in turn for every cell (a message kind and
a step), old and new back to back, which one first alternating, so both see the same moment of a
noisy machine. A child times a cell with time.process_time, repeating the step over one batch until
`--seconds` of CPU have been spent, and answers the median and the fastest repetition in µs per
message. The table gives each cell's median over the rounds for each tree, their ratio new/old, the
median of the rounds' paired ratios, the ratio of the fastest repetitions, the Python function calls
per message of each tree (cProfile's count: the same on every run) and the paired ratios' spread.

Kinds (a batch of `--batch` messages each, from the demo city, seed 7; every one valid and accepted):
  fix              our JSON on gcc/v1/terminal/<id>/fix, one terminal each, inside its member's grid
  reading_json     a gateway's JSON readings (4 records a message) on gcc/v1/gateway/<id>/reading
  reading_senml    the same readings as a SenML pack on gcc/v1/gateway/<id>/senml
  terminal_status  gcc/v1/terminal/<id>/status
  gateway_status   gcc/v1/gateway/<id>/status
Steps (what the worker calls, ingest/worker.py):
  decode   telemetry.decoders.decode (topic, payload, received_at, the registry's SenML names)
  stages   ingest.stages.process_batch: check_rate (with the worker's limiter and budgets) → check_size
           → decode → check_time → check_device → enrich (one vectorised grid lookup a batch)
  rows     ingest.store.row_for per accepted message into a store Batch (the worker's _rows)
  live     ingest.live.LiveState.apply on a pipeline that is never sent: the kinds' live changes,
           newest only, each writer's script call queued, each call's outcome read from a canned
           answer ("changed", no one back online, no alarm replaced)
Both trees must produce the same outcomes, rows and live changes: each child prints a digest of
them, and the bench refuses to report when the trees disagree.

`--profile KIND:STEP` instead runs that cell under cProfile in the `--new` tree and prints the top
of it (cumulative and own time). `--instructions` instead counts the machine instructions each
tree spends per message on the cells named, under valgrind (cachegrind, PYTHONHASHSEED=0, one BLAS
thread): the difference between a run that builds and warms the cells and one that also repeats
each `--repeat` times (default 3), per message. Slow (~40 s a cell and tree) but the same on every
run, whatever else the machine does: the arbiter when the timings are too noisy to tell 5 %.

Needs neither broker, database nor Redis: the city is generated, and the Redis client is never
connected. The module imports nothing of either tree at its top: a child imports its own tree's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

KINDS = ("fix", "reading_json", "reading_senml", "terminal_status", "gateway_status")
STEPS = ("decode", "stages", "rows", "live")
RECORDS_PER_READING = 4
_QUANTITIES = (("temperature", "Cel"), ("humidity", "%RH"), ("voltage", "V"), ("current", "A"))
_HERE = Path(__file__).resolve()


# --- the child: one tree's code -----------------------------------------------------------------
def _tree():
    """The names the bench needs from the tree in the working directory. Both trees spell them the
    same (ingest.kinds moved to telemetry.kinds, read through store.row_for and live's
    _newest_only in both); an API that differs would get its adapter here."""
    import redis
    from redis.client import Pipeline

    from ingest import live, stages, store
    from ingest.limits import Budgets, RateLimiter
    from ingest.model import Inbound
    from ingest.worker import WorkerConfig
    from simulator.citygen import SCALES, generate
    from telemetry.decoders import decode

    class UnsentPipeline(Pipeline):
        """Queues script calls like redis-py's, answers them from `answers` (script sha -> result)
        instead of sending them."""
        answers: dict = {}

        def execute(self, raise_on_error=True):
            results = [self.answers[args[1]] for args, _ in self.command_stack]
            self.reset()
            return results

    def live_state():
        client = redis.Redis(host="127.0.0.1", port=1)     # never connected
        state = live.LiveState(client)
        canned = {"fix": [1, 0], "alarm": [1, None]}
        UnsentPipeline.answers = {script.sha: canned.get(name, 1) for name, script in state._scripts.items()}
        client.pipeline = lambda transaction=True, shard_hint=None: UnsentPipeline(
            client.connection_pool, client.response_callbacks, transaction, shard_hint)
        return state

    return {"Inbound": Inbound, "Registry": stages.Registry, "process_batch": stages.process_batch, "decode": decode,
            "row_for": store.row_for, "Batch": store.Batch, "live_state": live_state, "RateLimiter": RateLimiter,
            "Budgets": Budgets, "WorkerConfig": WorkerConfig, "city": lambda: generate(SCALES["demo"], seed=7)}


def _inbounds(t, reg, kind: str, count: int) -> list:
    """`count` valid messages of a kind, as they arrive (QoS 1), received at one moment."""
    from datetime import datetime, timedelta, timezone

    import orjson

    now = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
    city = reg.city
    sensors_of: dict[str, list] = {}
    for sensor in city.sensors:
        sensors_of.setdefault(sensor.gateway_id, []).append(sensor)
    gateways = [g for g in city.gateways if g.gateway_id in sensors_of]
    out = []
    for i in range(count):
        ts = (now - timedelta(milliseconds=37 * (i + 1))).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        member = city.members[i % len(city.members)]
        gateway = gateways[i % len(gateways)]
        if kind == "fix":
            p = city.grid_by_code[member.grid_code].boundary.representative_point()
            body = {"ts": ts, "lat": round(p.y, 7), "lon": round(p.x, 7), "accuracy_m": 6.5, "speed_mps": 1.2,
                    "heading_deg": 90.0, "battery_pct": 80}
            topic = f"gcc/v1/terminal/{member.terminal_id}/fix"
        elif kind == "terminal_status":
            body = {"ts": ts, "state": "online", "battery_pct": 77}
            topic = f"gcc/v1/terminal/{member.terminal_id}/status"
        elif kind == "gateway_status":
            body, topic = {"ts": ts, "state": "online"}, f"gcc/v1/gateway/{gateway.gateway_id}/status"
        else:
            pairs = [(s, q) for s in sensors_of[gateway.gateway_id] for q in _QUANTITIES][:RECORDS_PER_READING]
            if kind == "reading_json":
                body = {"ts": ts, "readings": [{"sensor_id": s.sensor_id, "quantity": q, "value": 20.5 + j,
                                                "unit": u} for j, (s, (q, u)) in enumerate(pairs)]}
                topic = f"gcc/v1/gateway/{gateway.gateway_id}/reading"
            else:
                epoch = (now - timedelta(milliseconds=37 * (i + 1))).timestamp()
                body = [{**({"bt": round(epoch, 3)} if j == 0 else {}), "bn": f"{s.sensor_id}/", "n": q, "u": u,
                         "v": 20.5 + j} for j, (s, (q, u)) in enumerate(pairs)]
                topic = f"gcc/v1/gateway/{gateway.gateway_id}/senml"
        out.append(t["Inbound"](topic, orjson.dumps(body), 1, False, now))
    return out


def _cells(t, reg, kind: str, count: int) -> tuple[dict, str]:
    """Per step, a callable doing that step once over the batch; and the digest of what they made."""
    import hashlib

    inbounds = _inbounds(t, reg, kind, count)
    cfg = t["WorkerConfig"]()

    def limits():
        return (t["RateLimiter"](1e6, 1e6),      # as bench.ingest_bench: the limiter runs and never refuses
                t["Budgets"].of(cfg.report_rate_per_min, cfg.report_burst, cfg.alarm_rate_per_min, cfg.alarm_burst))

    def decode():
        return [t["decode"](i.topic, i.payload, i.received_at, reg.sensor_names) for i in inbounds]

    def stages():
        return t["process_batch"](inbounds, reg, *limits())

    outcomes = stages()
    refused = [o.rejection for o in outcomes if o.rejection is not None]
    if refused:
        raise SystemExit(f"{kind}: {len(refused)} of the bench's messages refused, e.g. {refused[0]}")
    items = [e for o in outcomes for e in o.accepted]

    def rows():
        batch = t["Batch"]()
        for index, outcome in enumerate(outcomes):
            for table, row in [t["row_for"](e, outcome.inbound.received_at) for e in outcome.accepted]:
                batch.add(table, row, index)
        return batch

    state = t["live_state"]()

    def live():
        return state.apply(items, now=1_796_000_000.0)

    made = repr((decode(), [(o.rejection, o.accepted) for o in outcomes], rows().rows, live()))
    return {"decode": decode, "stages": stages, "rows": rows, "live": live}, hashlib.sha256(made.encode()).hexdigest()


def _time(step, count: int, seconds: float) -> tuple[float, float]:
    """µs of CPU per message over a batch of `count`: the median and the best repetition of `step`,
    repeated until `seconds` of CPU have been spent (at least 3 times)."""
    reps, spent = [], 0.0
    while spent < seconds or len(reps) < 3:
        began = time.process_time()
        step()
        took = time.process_time() - began
        reps.append(took)
        spent += took
    return statistics.median(reps) / count * 1e6, min(reps) / count * 1e6


def serve(count: int) -> None:
    """Serves the parent: builds every cell once, then times the cell asked for on each line of
    stdin ("<kind>:<step> <seconds>"), answering one JSON line each. Its first line: the digests."""
    import gc

    t = _tree()
    reg = t["Registry"](t["city"]())
    cells, digests = {}, {}
    for kind in KINDS:
        steps, digests[kind] = _cells(t, reg, kind, count)
        cells.update({f"{kind}:{step}": run for step, run in steps.items()})
    for run in cells.values():
        run()                                   # warm: caches, lazily built validators
    print(json.dumps(digests), flush=True)
    for line in sys.stdin:
        cell, seconds = line.split()
        gc.collect()
        answer = _calls(cells[cell], count) if seconds == "calls" else _time(cells[cell], count, float(seconds))
        print(json.dumps(answer), flush=True)


def _calls(step, count: int) -> float:
    """Python function calls per message (cProfile's count: the same on every run, whatever the noise)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(step)
    return pstats.Stats(profiler).total_calls / count


def repeat(cells: list[str], count: int, times: int) -> None:
    """Build and warm the cells, then run each `times` times (for --instructions: nothing else). What
    was built is frozen out of the collector's way first: a full collection over the city, due in
    one run and not in the other, would count millions of instructions that are neither tree's."""
    import gc

    t = _tree()
    reg = t["Registry"](t["city"]())
    runs = [_cells(t, reg, kind, count)[0][step] for kind, step in (cell.split(":") for cell in cells)]
    for run in runs:
        run()
    gc.collect()
    gc.freeze()
    for run in runs:
        for _ in range(times):
            run()


def profile(cell: str, count: int) -> None:
    import cProfile
    import pstats

    kind, step = cell.split(":")
    t = _tree()
    reg = t["Registry"](t["city"]())
    run = _cells(t, reg, kind, count)[0][step]
    run()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20):
        run()
    profiler.disable()
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(25)


# --- the parent: rounds, the trees alternating cell by cell ---------------------------------------
_BOOT = "import runpy, sys; sys.argv = [{path!r}] + {argv!r}; runpy.run_path({path!r}, run_name='__main__')"


def _start_in(tree: Path, argv: list[str], serve: bool = True) -> subprocess.Popen:
    """This file run in `tree` (cwd, and first on sys.path: that tree's packages are imported)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE} if serve else {}
    return subprocess.Popen([sys.executable, "-c", _BOOT.format(path=str(_HERE), argv=argv)], cwd=tree, env=env,
                            text=True, bufsize=1, **pipes)


def _ask(proc: subprocess.Popen, cell: str, seconds: float | str):
    proc.stdin.write(f"{cell} {seconds}\n")
    return json.loads(proc.stdout.readline())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, default=Path("/tmp/base"), help="the old tree")
    ap.add_argument("--new", type=Path, default=Path.cwd(), help="the new tree (default: here)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--batch", type=int, default=500, help="messages a batch")
    ap.add_argument("--seconds", type=float, default=0.1, help="CPU seconds per cell, tree and round, at least")
    ap.add_argument("--profile", metavar="KIND:STEP", help="profile one cell in the new tree instead")
    ap.add_argument("--instructions", metavar="KIND:STEP,…", help="count instructions under valgrind instead")
    ap.add_argument("--repeat", type=int, default=3, help="--instructions: repetitions counted")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return serve(args.batch)
    if args.profile:
        _start_in(args.new.resolve(), ["--child-profile", args.profile, "--batch", str(args.batch)], serve=False).wait()
        return
    trees = {"old": args.base.resolve(), "new": args.new.resolve()}
    if args.instructions:
        return instructions(trees, args.instructions.split(","), args.batch, args.repeat)
    children = {name: _start_in(tree, ["--child", "--batch", str(args.batch)]) for name, tree in trees.items()}
    try:
        digests = {name: proc.stdout.readline() for name, proc in children.items()}
        cells = [f"{kind}:{step}" for kind in KINDS for step in STEPS]
        calls = {name: {cell: _ask(proc, cell, "calls") for cell in cells} for name, proc in children.items()}
        # runs[tree][cell] = [(median, best) per round]
        runs: dict[str, dict[str, list]] = {name: {cell: [] for cell in cells} for name in trees}
        began = time.monotonic()
        for r in range(args.rounds):
            for i, cell in enumerate(cells):
                for name in (("old", "new") if (r + i) % 2 == 0 else ("new", "old")):
                    runs[name][cell].append(_ask(children[name], cell, args.seconds))
            print(f"round {r + 1}/{args.rounds} done ({time.monotonic() - began:.0f} s)", file=sys.stderr)
    finally:
        for proc in children.values():
            proc.stdin.close()
            proc.wait()
    _report(trees, digests, runs, calls, cells, args)


def _instructions_of(tree: Path, cells: list[str], count: int, times: int) -> int:
    import re

    boot = _BOOT.format(path=str(_HERE), argv=["--child-repeat", ",".join(cells), str(count), str(times)])
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONHASHSEED": "0",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}    # no worker threads: counts vary by ~0.002 % a run
    done = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                           sys.executable, "-c", boot], cwd=tree, env=env, text=True, capture_output=True, check=True)
    return int(re.search(r"I\s+refs:\s+([\d,]+)", done.stderr).group(1).replace(",", ""))


def instructions(trees: dict[str, Path], cells: list[str], count: int, times: int) -> None:
    """Per cell and tree: (instructions with `times` repetitions - without) / messages."""
    print(f"machine instructions per message (valgrind cachegrind; {times} repetitions of batches of {count})")
    print(f"{'kind':<16}{'step':<8}{'old':>12}{'new':>12}{'new/old':>9}")
    from concurrent.futures import ThreadPoolExecutor

    for cell in cells:
        with ThreadPoolExecutor(2) as pool:     # valgrind runs are slow; their counts do not mind company
            counts = {(name, n): pool.submit(_instructions_of, tree, [cell], count, n)
                      for name, tree in trees.items() for n in (times, 0)}
        per = {name: (counts[name, times].result() - counts[name, 0].result()) / (times * count) for name in trees}
        kind, step = cell.split(":")
        print(f"{kind:<16}{step:<8}{per['old']:>12,.0f}{per['new']:>12,.0f}{per['new'] / per['old']:>9.3f}", flush=True)


def _report(trees: dict[str, Path], digests: dict[str, str], runs: dict[str, dict[str, list]],
            calls: dict[str, dict[str, float]], cells: list[str], args) -> None:
    same = digests["old"] == digests["new"]
    print(f"ingest chain CPU, µs per message: median over {args.rounds} rounds of each round's median repetition "
          f"(batches of {args.batch}; python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print(f"  old: {trees['old']}\n  new: {trees['new']}")
    print(f"  outcomes, rows and live changes of the two trees: {'the same' if same else 'DIFFERENT'}")
    print(f"{'kind':<16}{'step':<8}{'old':>9}{'new':>9}{'new/old':>9}{'paired':>8}{'best':>7}{'calls/msg':>16}"
          "   paired per round")
    totals = {"old": [0.0] * args.rounds, "new": [0.0] * args.rounds}
    for cell in cells:
        kind, step = cell.split(":")
        old, new = ([m for m, _ in runs[name][cell]] for name in ("old", "new"))
        best = min(b for _, b in runs["new"][cell]) / min(b for _, b in runs["old"][cell])
        paired = [n / o for n, o in zip(new, old, strict=True)]
        if step != "decode":        # the stages decode again: the chain is stages + rows + live
            for name, values in (("old", old), ("new", new)):
                totals[name] = [a + b for a, b in zip(totals[name], values, strict=True)]
        print(f"{kind:<16}{step:<8}{statistics.median(old):>9.2f}{statistics.median(new):>9.2f}"
              f"{statistics.median(new) / statistics.median(old):>9.3f}{statistics.median(paired):>8.3f}{best:>7.3f}"
              f"{calls['old'][cell]:>8.1f}{calls['new'][cell]:>8.1f}   {min(paired):.2f}..{max(paired):.2f}")
    old, new = statistics.median(totals["old"]), statistics.median(totals["new"])
    paired = statistics.median(n / o for n, o in zip(totals["new"], totals["old"], strict=True))
    print(f"{'every kind':<16}{'chain':<8}{old:>9.2f}{new:>9.2f}{new / old:>9.3f}{paired:>8.3f}"
          "          (stages + rows + live, summed over the kinds)")
    print("new/old: of the medians; paired: median of the rounds' ratios (old and new timed back to back); "
          "best: of the fastest repetitions; calls/msg: Python function calls per message, old and new (cProfile)")
    if not same:
        raise SystemExit("the trees made different outcomes, rows or live changes: the timings compare unlike work")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child-repeat"]:
        repeat(sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4]))
    elif "--child-profile" in sys.argv:
        i = sys.argv.index("--child-profile")
        profile(sys.argv[i + 1], int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else 500)
    else:
        main()
