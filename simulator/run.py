"""The fleet simulator: every member's terminal and every building gateway of a city, each on its
own MQTT connection with its own credentials, multiplexed on one thread (mqttmux.py)."""
from __future__ import annotations

import logging
import random
import sys
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timezone

from core.city import City
from simulator import payloads
from simulator.devices import GatewaySim, SimConfig, TerminalSim
from simulator.handheld import Phone, PhoneLink
from simulator.mqttmux import DeviceConnection, Mux
from telemetry.topics import NOTICE, TASK, terminal_topic

log = logging.getLogger(__name__)
TICK_S = 0.5  # real seconds between behaviour steps


def in_shard(device_id: str, shard: tuple[int, int]) -> bool:
    index, count = shard
    return zlib.crc32(device_id.encode()) % count == index


class Simulator:
    def __init__(self, city: City, passwords: dict[str, str], host: str, port: int, cfg: SimConfig,
                 *, seed: int = 1, max_members: int | None = None, max_gateways: int | None = None,
                 shard: tuple[int, int] = (0, 1), phones: list[Phone] = (), phone_url: str | None = None,
                 on_enrolled: Callable[[Phone], None] | None = None) -> None:
        self.cfg = cfg
        self.mux = Mux(host, port)
        # members with an enrolled phone (网格通) speak its HTTPS API instead of MQTT (simulator.handheld)
        self.phones = {p.terminal_id: p for p in phones if in_shard(p.terminal_id, shard)}
        self.link = PhoneLink(phone_url, on_enrolled=on_enrolled) if self.phones else None
        self.terminals: list[TerminalSim] = []
        self.gateways: list[GatewaySim] = []
        self.missing_accounts = 0
        rng = random.Random(seed)
        addresses = defaultdict(list)
        for b in city.buildings:
            addresses[b.grid_code].append(f"{b.name}, {city.grid_by_code[b.grid_code].name}")
        members = [m for m in city.members if in_shard(m.terminal_id, shard)][:max_members]
        for member in members:
            if member.terminal_id in self.phones:
                self._add_phone(city, member, rng, addresses[member.grid_code])
            else:
                self._add_terminal(city, member, passwords, rng, addresses[member.grid_code])
        sensors_by_gateway = defaultdict(list)
        for sensor in city.sensors:
            sensors_by_gateway[sensor.gateway_id].append(sensor)
        gateways = [g for g in city.gateways if in_shard(g.gateway_id, shard)][:max_gateways]
        for gateway in gateways:
            self._add_gateway(city, gateway, sensors_by_gateway[gateway.gateway_id], passwords, rng)

    def _add_terminal(self, city, member, passwords, rng, addresses) -> None:
        if member.terminal_id not in passwords:
            self.missing_accounts += 1
            return
        # the device sends through its own connection (set just below, before anything is sent)
        sim = TerminalSim(member, city.grid_by_code[member.grid_code], self.cfg,
                          random.Random(rng.getrandbits(64)), lambda t, p: sim.connection.publish(t, p),
                          addresses)
        # tasks, case notices and the announcements of its grid and above in one persistent session:
        # QoS 1 waits at the broker for an hour while the terminal is offline (a notice's own
        # message expiry is a day, an announcement's its own)
        downlink = tuple(terminal_topic(member.terminal_id, leaf) for leaf in (TASK, NOTICE)) + sim.announcement_topics
        conn = DeviceConnection(
            self.mux, member.terminal_id, member.terminal_id, passwords[member.terminal_id],
            will=sim.will(datetime.now(timezone.utc)), subscriptions=downlink,
            on_message=lambda c, msg: sim.on_downlink(msg.topic, msg.payload, datetime.now(timezone.utc)),
            on_online=lambda c: sim.publish_status(datetime.now(timezone.utc)),
            session_expiry_s=3600)
        sim.connection = conn
        self.mux.add(conn)
        self.terminals.append(sim)

    def _add_phone(self, city, member, rng, addresses) -> None:
        phone = self.phones[member.terminal_id]
        sim = TerminalSim(member, city.grid_by_code[member.grid_code], self.cfg, random.Random(rng.getrandbits(64)),
                          phone.publish, addresses)
        sim.connection = phone
        self.link.add(phone, lambda topic, payload: sim.on_downlink(topic, payload, datetime.now(timezone.utc)))
        self.terminals.append(sim)

    def _add_gateway(self, city, gateway, sensors, passwords, rng) -> None:
        if gateway.gateway_id not in passwords:
            self.missing_accounts += 1
            return
        sim = GatewaySim(gateway, city.building_by_id[gateway.building_id], sensors, self.cfg,
                         random.Random(rng.getrandbits(64)), lambda t, p: sim.connection.publish(t, p))
        conn = DeviceConnection(self.mux, gateway.gateway_id, gateway.gateway_id,
                                passwords[gateway.gateway_id], will=sim.will(datetime.now(timezone.utc)),
                                on_online=lambda c: c.publish(*payloads.gateway_status(
                                    gateway.gateway_id, datetime.now(timezone.utc), "online")))
        sim.connection = conn
        self.mux.add(conn)
        self.gateways.append(sim)

    def step(self, dt_real: float) -> None:
        dt = dt_real * self.cfg.speedup
        now = datetime.now(timezone.utc)
        for sim in self.terminals:
            conn = sim.connection
            if conn.paused:
                sim.offline_for_s -= dt
                if sim.offline_for_s <= 0:
                    conn.come_back()
                continue
            if not conn.connected:
                continue  # still connecting, or reconnecting after a broker restart
            if sim.wants_to_go_offline(dt):
                sim.drop(sim.rng.uniform(120, 1800))
                continue
            sim.step(now, dt)
        for sim in self.gateways:
            if sim.connection.connected:
                sim.step(now, dt)

    def run(self, duration: float | None = None, status_every: float = 5.0, stop=None) -> None:
        start = last_tick = last_status = time.monotonic()
        last_published = 0
        if self.link is not None:
            self.link.start()
        while (duration is None or time.monotonic() - start < duration) and not (stop and stop.is_set()):
            self.mux.poll(0.02)
            if self.link is not None:
                self.link.drain()
            now = time.monotonic()
            if now - last_tick >= TICK_S:
                self.step(now - last_tick)
                last_tick = now
            if status_every and now - last_status >= status_every:
                rate = (self.mux.published - last_published) / (now - last_status)
                last_published, last_status = self.mux.published, now
                self.print_status(rate)
        self.mux.close()
        if self.link is not None:
            self.link.stop()

    def print_status(self, rate: float) -> None:
        online_t = sum(t.connection.connected for t in self.terminals)
        online_g = self.mux.online - (online_t - sum(p.connected for p in self.phones.values()))
        tasks = sum(t.task is not None for t in self.terminals)
        print(f"simulator: {rate:7.0f} msg/s | terminals online {online_t}/{len(self.terminals)} | "
              f"gateways online {online_g}/{len(self.gateways)} | tasks {tasks} | {self.case_status()} | "
              f"published {self.mux.published} | unsent (offline) {self.mux.unsent} | "
              f"refused logins {self.mux.refused}{self.phone_status()}", file=sys.stderr, flush=True)

    def phone_status(self) -> str:
        if not self.phones:
            return ""
        counts = Counter()
        for phone in self.phones.values():
            counts.update(phone.counts)
        waiting = sum(len(p.outbox) for p in self.phones.values())
        online = sum(p.connected for p in self.phones.values())
        return (f" | phones online {online}/{len(self.phones)}, stored {counts['stored']}, refused {counts['refused']},"
                f" waiting {waiting}, downlink {sum(n for k, n in counts.items() if k.startswith('downlink:'))}")

    def case_status(self) -> str:
        """Case work over the fleet: jobs in hand, notices taken and ignored, updates by action."""
        ignored, answered = Counter(), Counter()
        for t in self.terminals:
            ignored.update(t.cases.ignored)
            answered.update(t.cases.answered)
        busy = sum(t.cases.busy for t in self.terminals)
        actions = ", ".join(f"{a} {n}" for a, n in sorted(answered.items())) or "none"
        received = sum(t.cases.received for t in self.terminals)
        return (f"cases {busy} | notices {received} (ignored {ignored.total()}) | "
                f"case updates {answered.total()} ({actions})")
