"""Cron fire times (croniter, in the schedule's IANA timezone) and ``{{ scheduled_time }}`` templates.

DST follows croniter: a wall-clock time that does not exist on the spring-forward day (02:30 in
America/New_York) fires once at the first valid instant after the gap (03:00 local, 07:00 UTC);
on the fall-back day a wall-clock time that occurs twice (01:30) fires at both occurrences (05:30 and
06:30 UTC) — two distinct scheduled times, each fired once.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import CasingTypeEnum, ExpressionDescriptor, Options
from croniter import CroniterBadDateError, croniter

from nb2prod.errors import UsageError

TEMPLATE = re.compile(r"\{\{\s*scheduled_time\s*(?:([+-])\s*(\d+)\s*([dhm]))?\s*(?::([^}]*?))?\s*\}\}")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
MAX_OFFSET = timedelta(days=36600)  # a century either way of the fire time
RANDOM_FIELD = re.compile(r"^[RH](\(|/|$)", re.IGNORECASE)  # croniter's random / hashed field values
# The cron aliases croniter accepts, as the 5-field expressions they stand for (cron_descriptor wants fields).
ALIASES = {"@midnight": "0 0 * * *", "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}


def check_cron(expr: str, tz: str) -> None:
    """Raise a UsageError unless the expression and timezone are what a schedule can store: a 5-field (or alias)
    expression that fires, has one meaning (croniter's ``R``/``H`` random and hashed fields are refused: ``R``
    re-randomises on every parse, so the fire time would change under a running scheduler), and is described in
    words; an IANA timezone."""
    if not isinstance(expr, str) or not isinstance(tz, str):
        raise UsageError("the cron expression and the timezone must be strings")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UsageError(f"unknown timezone {tz!r}; use an IANA name such as Europe/Paris or UTC") from None
    if any(RANDOM_FIELD.match(part) for part in re.split(r"[\s,]+", expr.strip())):
        raise UsageError(f"cron expression {expr!r}: random (R) and hashed (H) fields are not supported; "
                         "pick the minute and hour yourself, e.g. 17 2 * * *")
    if not croniter.is_valid(expr) or (not expr.startswith("@") and len(expr.split()) != 5):
        raise UsageError(f"invalid cron expression {expr!r}; use 5 fields (m h dom mon dow) or "
                         "@hourly/@daily/@weekly")
    try:
        croniter(expr).get_next(datetime)
    except CroniterBadDateError:
        raise UsageError(f"cron expression {expr!r} never fires (no such date, e.g. February 30)") from None
    except Exception:  # noqa: BLE001 - croniter's other refusals of what is_valid let through
        raise UsageError(f"invalid cron expression {expr!r}") from None
    try:
        describe(expr)
    except Exception:  # noqa: BLE001 - cron_descriptor's errors: an expression nb2prod cannot show
        raise UsageError(f"cron expression {expr!r} is not supported (it cannot be described); use 5 plain "
                         "fields (m h dom mon dow) or @hourly/@daily/@weekly") from None


def describe(expr: str) -> str:
    """A valid cron expression in words, 24-hour clock: ``30 2 * * 1-5`` → "At 02:30, Monday through Friday"."""
    options = Options()
    options.use_24hour_time_format = True
    options.casing_type = CasingTypeEnum.Sentence
    return ExpressionDescriptor(ALIASES.get(expr.lower(), expr), options).get_description()


def fire_times(expr: str, tz: str, after: datetime, until: datetime, limit: int = 10_000) -> list[datetime]:
    """Fire times in (after, until], as naive UTC datetimes (inputs are naive UTC too)."""
    zone = ZoneInfo(tz)
    start = after.replace(tzinfo=timezone.utc).astimezone(zone)
    it = croniter(expr, start)
    times = []
    while len(times) < limit:
        t = it.get_next(datetime).astimezone(timezone.utc).replace(tzinfo=None)
        if t > until:
            break
        times.append(t)
    return times


def next_fire(expr: str, tz: str, after: datetime) -> datetime:
    """The first fire time after ``after`` (naive UTC in and out)."""
    zone = ZoneInfo(tz)
    start = after.replace(tzinfo=timezone.utc).astimezone(zone)
    return croniter(expr, start).get_next(datetime).astimezone(timezone.utc).replace(tzinfo=None)


def next_fire_times(expr: str, tz: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after`` (naive UTC in and out)."""
    it = croniter(expr, after.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(tz)))
    return [it.get_next(datetime).astimezone(timezone.utc).replace(tzinfo=None) for _ in range(count)]


def local(t: datetime, tz: str) -> datetime:
    """A naive UTC time in the schedule's timezone (aware)."""
    return t.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(tz))


def render(value: object, scheduled: datetime, tz: str) -> object:
    """Replace ``{{ scheduled_time [+-N(d|h|m)][:FORMAT] }}`` in a string value; other values unchanged."""
    if not isinstance(value, str):
        return value
    local = scheduled.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(tz))

    def one(match: re.Match) -> str:
        sign, amount, unit, fmt = match.groups()
        t = local
        if amount:
            delta = timedelta(**{_UNITS[unit]: int(amount)})
            t = t + delta if sign == "+" else t - delta
        return t.strftime(fmt) if fmt else t.isoformat()

    return TEMPLATE.sub(one, value)


def check_template(value: object) -> None:
    """Refuse ``{{ ... }}`` that is not a scheduled_time template (templates are data, not code)."""
    if isinstance(value, str) and "{{" in value:
        leftover = TEMPLATE.sub("", value)
        if "{{" in leftover or "}}" in leftover:
            raise UsageError(f"parameter value {value!r}: only {{{{ scheduled_time [+|- N(d|h|m)][:FORMAT] }}}} "
                             "templates are allowed")
        for _, amount, unit, _ in TEMPLATE.findall(value):
            if amount and (len(amount) > 9 or timedelta(**{_UNITS[unit]: int(amount)}) > MAX_OFFSET):
                raise UsageError(f"parameter value {value!r}: the offset {amount}{unit} is out of range (at most "
                                 f"{MAX_OFFSET.days} days)")
