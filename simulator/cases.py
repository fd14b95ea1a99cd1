"""A member's part in the cases workflow (cases/notices.py, telemetry/notices.py): case notices in,
case updates out (telemetry.messages.CaseUpdate); no I/O. Timed by `now`, the clock the cases
engine's deadlines run on (a demo's case clocks are scaled: every answer is timed as a share of
the time left to the deadline a notice carries).
"""
from __future__ import annotations

import math
import random
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.catalogue import AlarmType, CaseState
from simulator.behaviour import Patrol
from telemetry.messages import is_valid_id
from telemetry.notices import CaseNotice, NoticeKind

# What members write on their handhelds (English, the Chinese as they would type it).
_FEEDBACK_NOTES = {
    "exposed_garbage": "Rubbish cleared and the spot swept (垃圾已清运)",
    "dirty_road": "Road surface swept and washed (路面已清扫)",
    "illegal_construction": "Works stopped, the owner was served a notice to restore (已责令停工)",
    "street_vending": "Vendor persuaded to move to the market (已劝离)",
    "illegal_parking": "Owner called, the car was moved (车辆已挪走)",
    "blocked_fire_lane": "Fire lane cleared (消防通道已清理)",
    "fire_hazard": "Hazard removed, residents told (隐患已消除)",
    "safety_hazard": "Area fenced off and the hazard removed (已设围挡并消除隐患)",
    "water_leak": "Valve closed, the property company repaired the pipe (已关阀维修)",
    "neighbour_dispute": "Talked with both households, they agreed (已调解)",
    "noise": "Spoke with the source, the noise stopped (已劝导)",
    "stray_animal": "The shelter took the animal in (已联系收容)",
    "flyposting": "Posters removed, the wall cleaned (已清除)",
    "damaged_road": "Fenced off, the repair crew patched the road (已修补)",
    "manhole_cover": "New cover fitted (新井盖已装好)",
    "street_light": "Lamp replaced, the light works (路灯已修复)",
    "elevator": "The maintenance company repaired the elevator (电梯已修复)",
    "public_facility": "Facility repaired (设施已修复)",
    AlarmType.ELEVATOR_ENTRAPMENT.value: "Maintenance came, the people were released unharmed (被困人员已解救)",
    AlarmType.GAS_OVER_THRESHOLD.value: "Valve closed, windows opened, the gas company checked (已关阀通风)",
    AlarmType.ELEVATOR_FAULT.value: "The maintenance company repaired the elevator (电梯已修复)",
    AlarmType.ELEVATOR_DOOR_FAULT.value: "Door adjusted by the maintenance company (电梯门已修复)",
    AlarmType.GAS_DETECTOR_FAULT.value: "Detector replaced (探测器已更换)",
    AlarmType.METER_CONTINUOUS_FLOW.value: "Leak found and fixed with the household (已查漏维修)",
    AlarmType.METER_SPIKE.value: "Checked with the household, the reading is explained (已核实)",
    AlarmType.LOW_BATTERY.value: "Battery replaced (电池已更换)",
    AlarmType.TAMPER.value: "Device checked and resealed (设备已复位)",
}
_STILL_WRONG = {
    "exposed_garbage": "Rubbish still there (垃圾仍未清运)", "dirty_road": "Road still dirty (路面仍不洁)",
    "street_vending": "The vendor is back (游商又回来了)", "illegal_parking": "The car is still there (车辆仍未挪走)",
    "flyposting": "Posters still on the wall (仍有张贴)", "manhole_cover": "Cover loose, rocks underfoot (井盖松动)",
    "street_light": "Light still off at night (路灯仍不亮)",
}
_STILL_WRONG_ANY = ("Not fixed, still as reported (问题仍未解决)", "Only partly done (仅部分处置)",
                    "The photos do not show the reported spot (照片与现场不符)")
_EXTENSION_REASONS = ("Waiting for parts (等待配件)", "Waiting for the property company (等待物业处理)",
                      "Needs a specialist department (需专业部门配合)", "The owner is away until tomorrow (当事人不在)")
_EXTENSION_LIMITS = ("2h", "4h", "1wd", "2wd")
_REJECT_REASONS = ("Not this grid's responsibility, please reassign (不属本网格职责)",
                   "Needs a specialist department (需专业部门处置)")
BUSY_WITH_CASE, BUSY_WITH_TASK = "busy with another case", "busy with a dispatcher task"


@dataclass(frozen=True)
class CaseAnswer:
    """What a member's terminal answers on a case: telemetry.messages.CaseUpdate's fields."""
    case_id: str
    action: str              # accept, reject, start, feedback, verify_pass, verify_fail, extension
    note: str | None = None
    reason: str | None = None
    photo_refs: tuple[str, ...] = ()
    extension: str | None = None


@dataclass
class _CaseJob:
    case_id: str
    category: str
    urgency: str
    place: tuple[float, float] | None   # (lon, lat): walked to before starting or verifying
    deadline: datetime | None           # what the plan is timed against (the notice's, or estimated)
    phase: str                          # "accepting" -> "walking" -> "on_site"
    verify: bool = False                # a supervisor's verification, else the handler's work
    needs_start: bool = False           # the case is accepted, not yet handling: say `start` on site
    dispatched_at: datetime | None = None
    act_at: datetime | None = None      # the next answer is due: accept/reject, feedback, the verdict
    arrive_at: datetime | None = None   # no place: when the member is there
    late: bool = False
    extension_at: datetime | None = None
    reject: str | None = None           # decided on arrival of the dispatch: rejected, why


class CaseWork:
    """A member's part in the cases engine's workflow: case notices in, answers out; no I/O.

    Every time is on the clock of `now` (the notices' deadlines run on it; a demo's case clocks are
    scaled, so every answer is timed as a share of the time left to the notice's deadline; without
    a deadline, `no_deadline_s` simulated seconds). One job at a time, so a case and a dispatcher
    task never pull the patrol apart: the terminal says whether it is `free` of tasks, and a busy
    terminal REJECTS a new dispatch at once ("busy with another case" / "… dispatcher task");
    work that cannot be refused (a verification, rework, a reopened or resumed case) is QUEUED
    and taken up when the current job is done. Notices are deduplicated by `notice_id`.
    """

    SEEN_MAX = 500

    def __init__(self, terminal_id: str, patrol: Patrol, rng: random.Random, *, verifier: bool,
                 reject_fraction: float, extension_fraction: float, late_fraction: float,
                 verify_fail_fraction: float, no_deadline_s: float, speedup: float = 1.0,
                 silent_fraction: float = 0.0) -> None:
        self.terminal_id, self.patrol, self.rng, self.verifier = terminal_id, patrol, rng, verifier
        self.reject_fraction, self.extension_fraction = reject_fraction, extension_fraction
        self.late_fraction, self.verify_fail_fraction = late_fraction, verify_fail_fraction
        self.silent_fraction = silent_fraction    # dispatches never answered (the offer times out)
        self.no_deadline = timedelta(seconds=no_deadline_s / speedup)
        self.sim_second = timedelta(seconds=1 / speedup)
        self.current: _CaseJob | None = None
        self.queue: deque[_CaseJob] = deque()
        self._seen: deque[int] = deque()
        self._seen_ids: set[int] = set()
        self.received = 0                         # every notice, readable or not
        self.notices: Counter[str] = Counter()    # the readable, new ones, by kind
        self.ignored: Counter[str] = Counter()    # by why: unreadable, duplicate, not_for_me
        self.answered: Counter[str] = Counter()   # by action
        self.photos = 0

    @property
    def busy(self) -> bool:
        return self.current is not None or bool(self.queue)

    # --- notices ----------------------------------------------------------------------------------
    def receive(self, payload: bytes, now: datetime, free: bool = True) -> list[CaseAnswer]:
        """A notice from the cases engine; the answers due at once (a busy terminal's reject)."""
        self.received += 1
        try:
            notice = CaseNotice.parse(self.terminal_id, payload)
            _readable(notice)
        except (ValueError, KeyError, TypeError):
            self.ignored["unreadable"] += 1     # as with tasks: ignored; the engine's clock runs on
            return []
        if notice.notice_id in self._seen_ids:
            self.ignored["duplicate"] += 1
            return []
        self._remember(notice.notice_id)
        self.notices[notice.kind.value] += 1
        return self._on(notice, now, free)

    def _on(self, n: CaseNotice, now: datetime, free: bool) -> list[CaseAnswer]:
        kind = n.kind
        if kind is NoticeKind.DISPATCHED or (kind is NoticeKind.RESUMED and n.state == CaseState.DISPATCHED):
            return self._dispatched(n, now, free)
        if kind is NoticeKind.VERIFY:
            if self.verifier:
                self._put(self._job(n, verify=True))
            else:
                self.ignored["not_for_me"] += 1
        elif kind in (NoticeKind.REWORK, NoticeKind.REOPENED) or \
                (kind is NoticeKind.RESUMED and n.state in (CaseState.ACCEPTED, CaseState.HANDLING)):
            self._put(self._job(n, needs_start=n.state == CaseState.ACCEPTED))
        elif kind is NoticeKind.ACCEPTED:
            job = self._find(n.case_id)
            if job is not None and not job.verify:   # the handling clock: the work is timed against it
                job.deadline = n.deadline
                if job is self.current and job.phase != "accepting":
                    self._retime(job, now)
        elif kind in (NoticeKind.EXTENSION_APPROVED, NoticeKind.EXTENSION_REFUSED):
            job = self._find(n.case_id)
            if job is not None:                   # go on, and feed back within the deadline it says
                job.deadline = n.deadline
                if job is self.current and job.phase != "accepting":
                    self._plan_feedback(job, now, first=False)
        elif kind in (NoticeKind.WITHDRAWN, NoticeKind.CLOSED):
            self._drop(n.case_id)
        return []                                 # escalated, resumed elsewhere: information

    def _dispatched(self, n: CaseNotice, now: datetime, free: bool) -> list[CaseAnswer]:
        if self._find(n.case_id) is not None:
            self._drop(n.case_id)                 # dispatched to us again: start over
        if self.busy or not free:
            busy_with = BUSY_WITH_CASE if self.busy else BUSY_WITH_TASK
            return [self._answer(CaseAnswer(n.case_id, "reject", reason=busy_with))]
        if self.rng.random() < self.silent_fraction:
            self.ignored["silent"] += 1           # never heard: the offer expires, the next member gets it
            return []
        job = self._job(n, phase="accepting")
        job.dispatched_at = n.time
        job.act_at = self._share(now, job.deadline, 0.1, 0.6)
        if self.rng.random() < self.reject_fraction:
            job.reject = self.rng.choice(_REJECT_REASONS)
        self.current = job
        return []

    # --- work ---------------------------------------------------------------------------------------
    def step(self, now: datetime, free: bool = True) -> list[CaseAnswer]:
        """The answers due at `now`; takes up queued work when free of tasks and other cases."""
        if self.current is None:
            if not self.queue or not free:
                return []
            self.current = self.queue.popleft()
            self._begin_walk(self.current, now)
        job, out = self.current, []
        if job.phase == "accepting" and now >= job.act_at:
            if job.reject:
                self.current = None
                return [self._answer(CaseAnswer(job.case_id, "reject", reason=job.reject))]
            out.append(self._answer(CaseAnswer(job.case_id, "accept")))
            job.deadline = None                   # the handling deadline comes with the `accepted` notice
            job.needs_start = True
            self._begin_walk(job, now, first=True)
        elif job.phase == "walking" and (self.patrol.arrived_at_task if job.place else now >= job.arrive_at):
            job.phase = "on_site"
            job.act_at = max(job.act_at, now + self.rng.uniform(30, 180) * self.sim_second)
            if job.needs_start:
                out.append(self._answer(CaseAnswer(job.case_id, "start")))
        elif job.phase == "on_site":
            if job.extension_at is not None and now >= job.extension_at:
                job.extension_at = None
                out.append(self._answer(CaseAnswer(job.case_id, "extension", reason=self.rng.choice(_EXTENSION_REASONS),
                                                   extension=self.rng.choice(_EXTENSION_LIMITS))))
            elif now >= job.act_at:
                out.append(self._answer(self._verdict(job, now) if job.verify else self._feedback(job, now)))
                self._finish()
        return out

    def _begin_walk(self, job: _CaseJob, now: datetime, first: bool = False) -> None:
        job.phase = "walking"
        if job.place:
            self.patrol.go_to(*job.place)
        else:
            job.arrive_at = now + self.rng.uniform(120, 900) * self.sim_second
        if job.verify:
            job.act_at = self._share(now, job.deadline, 0.1, 0.6)
        else:
            self._plan_feedback(job, now, first)

    def _plan_feedback(self, job: _CaseJob, now: datetime, first: bool) -> None:
        """Most work is fed back within the deadline; a `late_fraction` share at 110-160 % of the
        time left; who asks for more time (once, on site) plans to need it."""
        asks = first and self.rng.random() < self.extension_fraction
        if first:
            job.late = self.rng.random() < self.late_fraction
        job.extension_at = self._share(now, job.deadline, 0.2, 0.5) if asks else None
        job.act_at = self._share(now, job.deadline, *((1.1, 1.6) if job.late or asks else (0.3, 0.9)))

    def _retime(self, job: _CaseJob, now: datetime) -> None:
        """The same decisions (late or not, an extension or not), timed against the deadline now known."""
        if job.extension_at is not None:
            job.extension_at = self._share(now, job.deadline, 0.2, 0.5)
        late = job.late or job.extension_at is not None
        job.act_at = self._share(now, job.deadline, *((1.1, 1.6) if late else (0.3, 0.9)))

    def _feedback(self, job: _CaseJob, now: datetime) -> CaseAnswer:
        note = _FEEDBACK_NOTES.get(job.category, "Handled on site (已现场处置)")
        return CaseAnswer(job.case_id, "feedback", note=note, photo_refs=self._photos(job, now, self.rng.randint(1, 3)))

    def _verdict(self, job: _CaseJob, now: datetime) -> CaseAnswer:
        if self.rng.random() < self.verify_fail_fraction:
            reason = _STILL_WRONG.get(job.category) or self.rng.choice(_STILL_WRONG_ANY)
            return CaseAnswer(job.case_id, "verify_fail", reason=reason, photo_refs=self._photos(job, now, 1))
        return CaseAnswer(job.case_id, "verify_pass", note="Checked on site, done (现场核查合格)",
                          photo_refs=self._photos(job, now, self.rng.randint(0, 1)))

    # --- bookkeeping ------------------------------------------------------------------------------
    def _job(self, n: CaseNotice, phase: str = "queued", **kw) -> _CaseJob:
        return _CaseJob(n.case_id, n.category, n.urgency, _place(n), n.deadline, phase, **kw)

    def _put(self, job: _CaseJob) -> None:
        """Queue the job, replacing one queued for the same case; the current one is replaced in place."""
        if self.current is not None and self.current.case_id == job.case_id:
            self.queue.appendleft(job)
            self._finish()
            return
        self.queue = deque(j for j in self.queue if j.case_id != job.case_id)
        self.queue.append(job)

    def _find(self, case_id: str) -> _CaseJob | None:
        if self.current is not None and self.current.case_id == case_id:
            return self.current
        return next((j for j in self.queue if j.case_id == case_id), None)

    def _drop(self, case_id: str) -> None:
        if self.current is not None and self.current.case_id == case_id:
            self._finish()
        self.queue = deque(j for j in self.queue if j.case_id != case_id)

    def _finish(self) -> None:
        if self.current is not None and self.current.phase != "accepting":
            self.patrol.finish_task()
        self.current = None

    def _remember(self, notice_id: int) -> None:
        self._seen.append(notice_id)
        self._seen_ids.add(notice_id)
        if len(self._seen) > self.SEEN_MAX:
            self._seen_ids.discard(self._seen.popleft())

    def _answer(self, answer: CaseAnswer) -> CaseAnswer:
        self.answered[answer.action] += 1
        return answer

    def _share(self, now: datetime, deadline: datetime | None, lo: float, hi: float) -> datetime:
        """`now` plus a random share of the time left to `deadline` (none left: now)."""
        left = (deadline - now) if deadline is not None else self.no_deadline
        return now + max(left, timedelta(0)) * self.rng.uniform(lo, hi)

    def _photos(self, job: _CaseJob, now: datetime, count: int) -> tuple[str, ...]:
        refs = []
        for _ in range(count):
            self.photos += 1
            refs.append(f"photos/{now:%Y/%m/%d}/{self.terminal_id}-{job.case_id}-{self.photos}.jpg")
        return tuple(refs)


def _readable(n: CaseNotice) -> None:
    """What CaseNotice.parse leaves unchecked and the work needs (ValueError if not so)."""
    if not is_valid_id(n.case_id):
        raise ValueError(f"case_id {n.case_id!r} is not an id")
    if any(t is not None and t.tzinfo is None for t in (n.time, n.deadline)):
        raise ValueError("a notice's times have a timezone")


def _place(n: CaseNotice) -> tuple[float, float] | None:
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if number(n.lon) and number(n.lat) and -180 <= n.lon <= 180 and -90 <= n.lat <= 90:
        return float(n.lon), float(n.lat)
    return None
