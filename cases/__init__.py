"""Cases: what a report, an alarm, an SOS or a hotline call becomes, and its life until it is closed.

- `model`: states, stages, commands, the case and its events (the words of ../shared/DOMAIN.md);
- `machine`: the pure state machine, `apply(case, command, actor, now, rules) -> Applied | Refusal`;
- `limits`: time limits per (category, stage, urgency) in minutes, working hours or working days;
- `calendar`: the working-time calendar (China's holidays and make-up working days) that turns a
  limit into a stored deadline;
- `escalation`: the ladders (data, not `if` chains) and the pure function that says which step is
  due when.
Nothing here touches a clock, a database or MQTT: the callers pass `now` and store what comes out.
"""
