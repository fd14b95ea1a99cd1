"""`python -m simulator`: simulated terminals and building gateways on the real broker.

Each terminal and gateway logs in with its own account (from the broker accounts file that the
local stack writes), so the broker's authentication and ACL apply as they do in the field.
"""
from __future__ import annotations

from core.lifecycle import block_stop_signals

# Before any import that may start a thread (numpy's BLAS pool does): threads inherit the blocked
# stop signals, so SIGTERM/SIGINT reach only the sigwait in the main thread (core.lifecycle).
block_stop_signals()

import argparse
import logging
import multiprocessing
import sys
import threading
from pathlib import Path

import orjson

from config.settings import load_settings
from core.city import City
from core.lifecycle import raise_open_file_limit, run_until_signalled
from simulator.devices import SimConfig
from simulator.handheld import PHONES_FILE, load_phones, save_phones
from simulator.run import Simulator


def _parse(argv):
    settings = load_settings()
    p = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    p.add_argument("--city", type=Path, default=settings.data_dir / "city.json")
    p.add_argument("--accounts", type=Path, default=settings.data_dir / "broker-accounts.json",
                   help="broker accounts file (username, password, kind) written by the local stack")
    p.add_argument("--host", default=settings.mqtt_host)
    p.add_argument("--port", type=int, default=settings.mqtt_port)
    p.add_argument("--speedup", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument("--members", type=int, default=None, help="simulate at most this many terminals")
    p.add_argument("--gateways", type=int, default=None, help="simulate at most this many gateways")
    p.add_argument("--fix-interval", type=float, default=5.0, help="simulated seconds between fixes")
    p.add_argument("--malformed", type=float, default=0.0, help="fraction of malformed publications")
    p.add_argument("--fault-rate", type=float, default=1.0, help="multiplies every device fault rate")
    p.add_argument("--incident-rate", type=float, default=0.3, help="reports per member per hour")
    p.add_argument("--case-reject", type=float, default=SimConfig.case_reject_fraction,
                   help="fraction of dispatched cases a terminal rejects")
    p.add_argument("--case-silent", type=float, default=SimConfig.case_silent_fraction,
                   help="fraction of dispatched cases a terminal never answers (the offer expires)")
    p.add_argument("--case-extension", type=float, default=SimConfig.case_extension_fraction,
                   help="fraction of handled cases with an extension asked")
    p.add_argument("--case-late", type=float, default=SimConfig.case_late_fraction,
                   help="fraction of handled cases fed back after their deadline")
    p.add_argument("--verify-fail", type=float, default=SimConfig.verify_fail_fraction,
                   help="fraction of verifications a grid supervisor fails (rework)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many real seconds")
    p.add_argument("--processes", type=int, default=1, help="split the fleet over this many processes")
    p.add_argument("--phones", type=Path, default=settings.data_dir / PHONES_FILE,
                   help="members whose phone (网格通) is simulated over its HTTPS API: enrolment codes, then "
                        "credentials (the local stack writes the codes)")
    p.add_argument("--phone-url", default=f"http://127.0.0.1:{settings.ingest_http_port}",
                   help="the device-facing HTTP service the simulated phones talk to")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def run_shard(args, shard: tuple[int, int]) -> int:
    raise_open_file_limit()
    city = City.load(args.city)
    passwords = {a["username"]: a["password"] for a in orjson.loads(args.accounts.read_bytes())}
    cfg = SimConfig(speedup=args.speedup, fix_interval_s=args.fix_interval, malformed=args.malformed,
                    fault_rate=args.fault_rate, incidents_per_member_hour=args.incident_rate,
                    case_reject_fraction=args.case_reject, case_silent_fraction=args.case_silent,
                    case_extension_fraction=args.case_extension,
                    case_late_fraction=args.case_late, verify_fail_fraction=args.verify_fail)
    phones = load_phones(args.phones)
    sim = Simulator(city, passwords, args.host, args.port, cfg, seed=args.seed + shard[0],
                    max_members=args.members, max_gateways=args.gateways, shard=shard,
                    phones=phones, phone_url=args.phone_url,
                    on_enrolled=lambda phone: save_phones(args.phones, [phone]))
    if sim.missing_accounts:
        logging.warning("%d devices have no broker account and are not simulated", sim.missing_accounts)
    stop = threading.Event()
    print(f"simulator shard {shard[0] + 1}/{shard[1]}: {len(sim.terminals)} terminals "
          f"({len(sim.phones)} of them phones -> {args.phone_url}), {len(sim.gateways)} gateways -> "
          f"{args.host}:{args.port}, speed-up x{args.speedup}", file=sys.stderr, flush=True)
    return run_until_signalled(lambda: sim.run(args.duration, stop=stop), stop)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.processes <= 1:
        return run_shard(args, (0, 1))
    procs = [multiprocessing.Process(target=run_shard, args=(args, (i, args.processes)), daemon=True)
             for i in range(args.processes)]
    for proc in procs:
        proc.start()
    stop = threading.Event()

    def supervise() -> None:
        while any(proc.is_alive() for proc in procs) and not stop.wait(0.5):
            pass
        for proc in procs:  # on SIGTERM/SIGINT each shard gets SIGTERM and stops itself cleanly
            proc.terminate()
            proc.join(10)

    return run_until_signalled(supervise, stop)


if __name__ == "__main__":
    sys.exit(main())
