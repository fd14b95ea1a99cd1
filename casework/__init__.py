"""The cases engine process, `python -m casework`: it composes the rooms below it into one process.

`cases/` is the case workflow itself (the machine, the store, the intake, the engine's loop, the
notifier) and sits below `dispatch/` and `kpis/`, which read cases' events; the process that runs
the engine also needs what stands above cases: the nearest available member for an offer
(`dispatch.candidates`), the members' dispatch-status history (`dispatch.history`) and the
assessment's maintainers (`kpis.rollup`, `kpis.patrol`). Composing them inside `cases/` would make
cases import the rooms that import it (a package cycle), so the composition has its own room above
them, as the dashboard and the ingest have theirs:

- `build`: the engine from the settings (intake, rules, the live bus, offers, the candidate
  search), also what the demo's desk (`simulator.desk`, its own process) acts through;
- `__main__`: the process: seeds, the engine's loop, the notifier, the maintainers, `/healthz` and
  `/metrics`.
"""
