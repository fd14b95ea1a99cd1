"""Sustained ingest throughput, published → committed, QoS 1, zero loss, measured side by side.

    .venv/bin/python -m bench.ingest_bench [--messages 60000] [--workers 2] [--publishers 2]

Starts its own local stack (temp dir, free ports) and the demo city, then runs, one after the other
on the same stack and the same load:
  generator   the load generator alone against a broker with no subscriber (its own ceiling)
  broker      a subscriber that discards (QoS 1, acked by paho): the broker-only ceiling
  pipeline    our ingest workers (`python -m ingest`) in one share group, until every message is
              in the database exactly once
  refused     the same pipeline and load with one row in every `--refused-every` messages that the
              database refuses (a fix with accuracy_m 1e39: a valid number, out of range for
              PostgreSQL's `real`, SQLSTATE 22003): every such batch is bisected, and the run ends
              when the others are stored and each refused one is a `db_rejected` dead letter
  naive       one subscriber doing one INSERT + commit per message
Each load is published by `--publishers` processes, each a real terminal account with QoS 1. Two
terminals flood here far beyond any device's rate, so the workers' per-device limit is raised out
of the way (GCC_INGEST_DEVICE_RATE_PER_S; the limiter still runs). The pipeline runs report their
commits per batch (gcc_ingest_commits_total / batches).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import threading
import time
from datetime import datetime, timedelta, timezone

import orjson
import paho.mqtt.client as mqtt
import psycopg2
import redis
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.harness import BenchStack, progress
from simulator.citygen import SCALES, generate
from stack import free_port
from stack.process import ServerProcess
from telemetry.topics import AccountKind

REFUSED_ACCURACY_M = 1e39     # valid JSON and a valid Fix, out of range for `real`: the database refuses it
UNLIMITED_RATE = "1000000"    # messages/s per device: the limiter runs, and never refuses here


def _client(account, client_id: str, **kw) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5, **kw)
    c.username_pw_set(account[0], account[1])
    return c


def _payloads(count: int, start_t: float, lat: float, lon: float, refused_every: int) -> list[bytes]:
    base = datetime.fromtimestamp(start_t, timezone.utc)
    out = []
    for i in range(count):
        fix = {"ts": (base + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"), "lat": lat, "lon": lon,
               "battery_pct": 80}
        if refused_every and i % refused_every == refused_every - 1:
            fix["accuracy_m"] = REFUSED_ACCURACY_M
        out.append(orjson.dumps(fix))
    return out


def publish_load(port: int, account: tuple[str, str], lon: float, lat: float, count: int, start_t: float,
                 go: mp.Event, done: mp.Queue, refused_every: int = 0) -> None:
    """One publisher process: `count` QoS 1 fixes as fast as the broker acknowledges them (every
    `refused_every`-th one a fix the database refuses)."""
    acked = threading.Semaphore(0)
    c = _client(account, account[0])      # a device connects with its own id only
    c.max_inflight_messages_set(500)
    c.max_queued_messages_set(0)
    c.on_publish = lambda *a: acked.release()
    c.connect("127.0.0.1", port)
    c.loop_start()
    payloads = _payloads(count, start_t, lat, lon, refused_every)
    topic = f"gcc/v1/terminal/{account[0]}/fix"
    go.wait()
    began = time.perf_counter()
    for payload in payloads:
        c.publish(topic, payload, qos=1)
    for _ in range(count):
        acked.acquire()
    done.put(time.perf_counter() - began)
    c.disconnect()
    c.loop_stop()


def _subscribe_until_stopped(client: mqtt.Client, port: int, share: str, ready: mp.Event, stop: mp.Event) -> None:
    client.on_connect = lambda cl, *a: cl.subscribe(f"$share/{share}/gcc/v1/terminal/+/fix", qos=1)
    client.on_subscribe = lambda *a: ready.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()


def discard_subscriber(port: int, account: tuple[str, str], index: int, ready: mp.Event, counter,
                       stop: mp.Event) -> None:
    """The broker-only ceiling: count and drop (paho acknowledges after the callback)."""
    c = _client(account, account[0])
    c.on_message = lambda *a: counter.__setitem__(index, counter[index] + 1)
    _subscribe_until_stopped(c, port, "benchdiscard", ready, stop)


def naive_subscriber(port: int, account: tuple[str, str], dsn: str, ready: mp.Event, stop: mp.Event) -> None:
    """The naive pipeline: one INSERT and one commit per message."""
    conn = psycopg2.connect(dsn)

    def on_message(client, userdata, msg):
        body = orjson.loads(msg.payload)
        with conn, conn.cursor() as cur:
            cur.execute("insert into positions (time, terminal_id, lat, lon, battery_pct, source) values "
                        "(%s, %s, %s, %s, %s, 'gcc') on conflict do nothing",
                        (body["ts"], msg.topic.split("/")[3], body["lat"], body["lon"], body["battery_pct"]))

    c = _client(account, account[0])
    c.on_message = on_message
    _subscribe_until_stopped(c, port, "benchnaive", ready, stop)


class Bench:
    """The runs, one after the other on one stack (bench.harness) and the demo city."""

    def __init__(self, args, harness: BenchStack) -> None:
        self.args, self.harness = args, harness
        self.stack, self.settings, self.city = harness.stack, harness.settings(), harness.city
        self.run_no = 0
        self._counter = None
        self.commits_per_batch: dict[int, float] = {}   # refused_every -> commits per batch

    def close(self) -> None:
        if self._counter is not None:
            self._counter.close()

    def _accounts(self) -> list[tuple[tuple[str, str], float, float]]:
        out = []
        for i in range(self.args.publishers):
            m = self.city.members[(self.run_no * self.args.publishers + i) % len(self.city.members)]
            p = self.city.grid_by_code[m.grid_code].boundary.representative_point()
            a = self.stack.account(m.terminal_id)
            out.append(((a.username, a.password), p.x, p.y))
        self.run_no += 1
        return out

    def _service_account(self, name: str) -> tuple[str, str]:
        account = self.stack.service_account(AccountKind.INGEST, name)
        return account.username, account.password

    def publish(self, per: int, refused_every: int = 0) -> tuple[list[mp.Process], mp.Event, mp.Queue, list[str]]:
        go, done = mp.Event(), mp.Queue()
        start_t = time.time() - 3600 + self.run_no * 600
        procs, terminals = [], []
        for account, lon, lat in self._accounts():
            terminals.append(account[0])
            procs.append(mp.Process(target=publish_load, args=(self.stack.mosquitto.port, account, lon, lat, per,
                                                               start_t, go, done, refused_every)))
        for p in procs:
            p.start()
        time.sleep(1.0)  # connected, payloads prepared
        return procs, go, done, terminals

    def rows(self, terminals: list[str]) -> int:
        """Rows stored for these terminals (one connection kept for the whole run)."""
        if self._counter is None or self._counter.closed:
            self._counter = psycopg2.connect(self.settings.pg_dsn)
            self._counter.autocommit = True
        with self._counter.cursor() as cur:
            cur.execute("select count(*) from positions where terminal_id = any(%s)", (terminals,))
            return cur.fetchone()[0]

    def dead_letters(self, terminals: list[str], reason: str) -> int:
        with self._counter.cursor() as cur:
            cur.execute("select count(*) from dead_letters where reason = %s and topic = any(%s)",
                        (reason, [f"gcc/v1/terminal/{t}/fix" for t in terminals]))
            return cur.fetchone()[0]

    def _timed(self, per: int, arrived, limit_s: float = 900, refused_every: int = 0) -> tuple[float, list[str]]:
        """Publish `per` messages from each publisher; msg/s from the go signal until `arrived(total,
        terminals)` holds."""
        procs, go, _, terminals = self.publish(per, refused_every)
        total = per * len(procs)
        began = time.perf_counter()
        go.set()
        while not arrived(total, terminals) and time.perf_counter() - began < limit_s:
            time.sleep(0.02)
        elapsed = time.perf_counter() - began
        for p in procs:
            p.join()
        return total / elapsed, terminals

    def run_generator(self, per: int) -> float:
        procs, go, done, _ = self.publish(per)
        go.set()
        durations = [done.get() for _ in procs]
        for p in procs:
            p.join()
        return per * len(procs) / max(durations)

    def run_broker(self, per: int) -> float:
        stop, counter = mp.Event(), mp.Array("l", self.args.workers)
        subs = []
        for i in range(self.args.workers):
            ready = mp.Event()
            subs.append(mp.Process(target=discard_subscriber, args=(self.stack.mosquitto.port,
                                   self._service_account(f"bench-discard-{i}"), i, ready, counter, stop)))
            subs[-1].start()
            ready.wait(10)
        rate, _ = self._timed(per, lambda total, _: sum(counter[:]) >= total)
        stop.set()
        for p in subs:
            p.join()
        return rate

    def _start_workers(self) -> tuple[list[ServerProcess], list[int]]:
        workers, metric_ports = [], []
        for i in range(1, self.args.workers + 1):
            account = self.stack.service_account(AccountKind.INGEST, f"ingest-{i}")
            metric_ports.append(free_port())
            workers.append(self.harness.app(f"ingest-{i}", ["ingest", "--index", str(i)], env={
                **self.stack.app_env("ingest", account), "GCC_INGEST_HTTP_PORT": str(free_port() - i + 1),
                "GCC_INGEST_METRICS_PORT": str(metric_ports[-1] - i + 1),
                "GCC_INGEST_DEVICE_RATE_PER_S": UNLIMITED_RATE}))
        time.sleep(4)  # workers load the city and subscribe
        return workers, metric_ports

    def run_pipeline(self, per: int, refused_every: int = 0) -> float:
        workers, metric_ports = self._start_workers()
        before = self._redis_writes_to_screens()
        cpu_before = sum(_cpu_s(w.pid) for w in workers)
        refused = per // refused_every if refused_every else 0

        def arrived(total, terminals):
            stored = self.rows(terminals) >= total - refused * len(terminals)
            return stored and (not refused or self.dead_letters(terminals, "db_rejected") >= refused * len(terminals))

        rate, terminals = self._timed(per, arrived, refused_every=refused_every)
        time.sleep(0.5)  # the last batches' live updates
        live_messages = self._redis_writes_to_screens() - before
        batches = sum(_metric(port, "gcc_ingest_batch_size_count") for port in metric_ports)
        commits = sum(_metric(port, "gcc_ingest_commits_total") for port in metric_ports)
        cpu_ms_per_1000 = (sum(_cpu_s(w.pid) for w in workers) - cpu_before) * 1e6 / (per * len(terminals))
        for w in workers:
            w.stop(20)
        self.commits_per_batch[refused_every] = commits / batches if batches else 0.0
        if not refused_every:
            self.live_messages, self.batches = live_messages, batches
            self.worker_cpu_ms_per_1000 = cpu_ms_per_1000
        assert self.rows(terminals) == (per - refused) * self.args.publishers, "pipeline lost or duplicated messages"
        assert self.dead_letters(terminals, "db_rejected") == refused * self.args.publishers
        return rate

    def run_refused(self, per: int) -> float:
        return self.run_pipeline(per, refused_every=self.args.refused_every)

    def _redis_writes_to_screens(self) -> int:
        """Messages the workers have put in Redis for the screens: PUBLISH (a message queue) and XADD
        (a stream) calls, from Redis's own command statistics."""
        r = redis.Redis(host="127.0.0.1", port=self.stack.redis.port,
                        password=self.settings.redis_password.get_secret_value())
        try:
            stats = r.info("commandstats")
        finally:
            r.close()
        return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("publish", "xadd"))

    def run_naive(self, per: int) -> float:
        stop, ready = mp.Event(), mp.Event()
        sub = mp.Process(target=naive_subscriber, args=(self.stack.mosquitto.port, self._service_account("bench-naive"),
                                                       self.settings.pg_dsn, ready, stop))
        sub.start()
        ready.wait(10)
        rate, _ = self._timed(per, lambda total, terminals: self.rows(terminals) >= total)
        stop.set()
        sub.join()
        return rate


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (/proc/<pid>/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric(port: int, name: str) -> float:
    """One counter of a worker's /metrics (summed over its label sets)."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
               or line.startswith(name + "{"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--naive-messages", type=int, default=6_000, help="the naive pipeline is slow")
    parser.add_argument("--workers", type=int, default=2, help="ingest workers (and discarding subscribers)")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--refused-every", type=int, default=2000,
                        help="the refused run: one row the database refuses in this many messages")
    args = parser.parse_args()
    progress("starting the stack and loading the city ...")
    with BenchStack("ingest", city=generate(SCALES["demo"], seed=3)) as harness:
        report(args, *measure(args, harness))


def measure(args, harness: BenchStack) -> tuple[Bench, list, list]:
    bench = Bench(args, harness)
    per, naive_per = args.messages // args.publishers, args.naive_messages // args.publishers
    runs = [("load generator alone (no subscriber)", bench.run_generator, per),
            (f"broker-only ceiling ({args.workers} discarding subscribers)", bench.run_broker, per),
            (f"our pipeline ({args.workers} ingest workers, committed)", bench.run_pipeline, per),
            (f"our pipeline, 1 row in {args.refused_every:,} refused by the database", bench.run_refused, per),
            ("naive pipeline (INSERT + commit per message)", bench.run_naive, naive_per)]
    results = []
    try:
        for number, (name, run, n) in enumerate(runs, 1):
            progress(f"run {number}/{len(runs)}: {name}, {n * args.publishers:,} messages ...")
            results.append((name, run(n), n * args.publishers))
    finally:
        bench.close()
    return bench, runs, results


def report(args, bench: Bench, runs: list, results: list) -> None:
    naive = results[-1][1]
    print(f"\nIngest benchmark, QoS 1, published -> received/committed; {os.cpu_count()} cores, "
          f"{platform.machine()}, Python {platform.python_version()}, {datetime.now():%Y-%m-%d %H:%M}")
    print(f"{'run':<58}{'messages':>10}{'msg/s':>10}{'vs naive':>10}{'commits/batch':>15}")
    per_batch = {bench.run_pipeline: bench.commits_per_batch.get(0), bench.run_refused:
                 bench.commits_per_batch.get(args.refused_every)}
    for (name, rate, n), (_, run, _) in zip(results, runs, strict=True):
        commits = per_batch.get(run)
        print(f"{name:<58}{n:>10,}{rate:>10,.0f}{rate / naive:>9.1f}x" + (f"{commits:>15.2f}" if commits else ""))
    if getattr(bench, "batches", 0):
        print(f"live messages for the screens during the pipeline run: {bench.live_messages:,} for "
              f"{bench.batches:,.0f} committed batches ({bench.live_messages / bench.batches:.2f} per batch)")
        print(f"ingest workers' CPU during the pipeline run: {bench.worker_cpu_ms_per_1000:.0f} ms per 1,000 messages "
              "(user + system, all workers)")


if __name__ == "__main__":
    main()
