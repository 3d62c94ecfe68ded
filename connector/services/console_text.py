"""The test console as plain text: ``manage.py test_calendar`` and ``?format=text``.

The same run as the HTML console (connector/services/console.py): the steps in
the order they ended, each room's outcome with the upstream's code and hint,
every event with its sensitivity and free/busy, and what the screens show.
``render_head`` and ``render_step`` let the command print the steps as they end.
"""

from __future__ import annotations

from django.utils import timezone

from connector.core.trace import Step
from connector.services.console import ConsoleRun, RoomResult, back_off_text


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def step_lines(step: Step) -> list[str]:
    """What a step says, without the per-event notes the event list repeats."""
    if step.name == "filter":
        lines = [note for note in step.details if not note.startswith("dropped by")]
        for name, count in sorted(step.data.get("dropped", {}).items()):
            lines.append(f"{count} dropped by {name}")
        return lines
    return list(step.details)


def render_head(run: ConsoleRun) -> str:
    calendar = run.calendar
    server = calendar.server
    return (
        f"Test of calendar {calendar.calendar_id} through server {server.server_id} "
        f"({server.get_type_display()}), "
        f"{timezone.localtime(run.now):%Y-%m-%d %H:%M:%S %Z}\n\nSteps:\n"
    )


def render_step(step: Step) -> str:
    mark = "ok" if step.ok else "FAILED"
    out = [f"  {mark:<6} {_ms(step.duration):>8}  {step.title}"]
    out += [f"{'':18}{line}" for line in step_lines(step)]
    if not step.ok and step.error:
        out.append(f"{'':18}error: {step.error}")
    return "\n".join(out) + "\n"


def _room_lines(room: RoomResult, shown: object) -> list[str]:
    """A room's outcome; the hint of ``shown`` (the run's error) comes once, at the end."""
    if room.ok:
        return [f"  ok      {room.label}: {room.count} item{'s' if room.count != 1 else ''}"]
    if not room.reached:
        return [f"  -       {room.label}: not read (no time left in the console's budget)"]
    error = room.error
    where = f" at “{room.failed_step.title}”" if room.failed_step is not None else ""
    lines = [f"  FAILED  {room.label}{where}: {error.message if error else ''}"]
    if error is not None:
        lines.append(f"{'':10}code: {error.upstream or error.code}")
        if back_off_text(error):
            lines.append(f"{'':10}back-off: {back_off_text(error)}")
        if error.hint and error is not shown:
            lines.append(f"{'':10}hint: {error.hint}")
    return lines


def render_tail(run: ConsoleRun, *, show_ics: bool = False) -> str:
    out: list[str] = []
    if run.rooms:
        out += ["", "Rooms:"]
        for room in run.rooms:
            out += _room_lines(room, run.error)
    if run.result is not None:
        window = run.result.window
        out += [
            "",
            f"Window: {window.start.astimezone(run.tz):%Y-%m-%d %H:%M} to "
            f"{window.end.astimezone(run.tz):%Y-%m-%d %H:%M} ({run.tz.key})",
        ]
        rows = run.events()
        kept = sum(1 for row in rows if row.kept)
        out += ["", f"Events: {kept} kept, {len(rows) - kept} dropped"]
        for row in rows:
            line = (
                f"  {row.status:<8} {row.when:<34} {row.resource or 'own calendar'}: {row.subject}"
            )
            if row.masked:
                line += " (masked)"
            line += f"  [{row.sensitivity}, {row.free_busy}]"
            if not row.kept:
                line += f"  <- {row.dropped_by} ({row.reason})"
            out.append(line)
            for alarm in row.alarms:
                out.append(f"{'':11}alarm: {alarm}")
        for hint in run.subject_hints():
            out += [
                "",
                f"Subjects in {hint.resource} look rewritten by the room mailbox ({hint.signs}).",
                "Its calendar processing replaces or removes subjects; in Exchange PowerShell:",
                f"  {hint.command}",
                "(applies to meetings booked or updated after the change)",
            ]
        out += ["", "What the screens show:"]
        for bar in run.timeline():
            out.append(f"  {bar.resource or 'own calendar'}:")
            if bar.error is not None:
                out.append("    could not be read: not shown as free")
            for day in bar.days:
                labels = "; ".join(block.label for block in day.blocks) or "free"
                out.append(f"    {day.label}: {labels}")
        if run.ok:
            size = len(run.result.ics.encode("utf-8"))
            out += ["", f"iCalendar: {run.result.event_count} events, {size} bytes."]
            if show_ics:
                out += ["", run.result.ics.replace("\r\n", "\n").rstrip("\n")]
    out.append("")
    if run.ok:
        out.append(f"Result: OK in {_ms(run.duration)}.")
        return "\n".join(out) + "\n"
    if run.partial:
        failed = run.failed_rooms
        out.append(
            f"Result: PARTLY FAILED: {len(failed)} of {len(run.rooms)} rooms could not be read "
            f"(first at “{run.failed_step_title}”, code {run.error_code})."
        )
    else:
        out.append(
            f"Result: FAILED at “{run.failed_step_title or 'the first step'}”"
            f" (code {run.error_code})."
        )
    out.append(f"Error: {run.error_message}")
    if run.back_off:
        out.append(f"Back-off: {run.back_off}")
    if run.error_hint:
        out.append(f"Hint: {run.error_hint}")
    return "\n".join(out) + "\n"


def render_text(run: ConsoleRun, *, show_ics: bool = False) -> str:
    steps = "".join(render_step(step) for step in run.steps)
    return render_head(run) + steps + render_tail(run, show_ics=show_ics)
