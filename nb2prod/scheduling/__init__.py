"""Cron schedules stored in nb2prod's database, fired exactly once per (schedule, scheduled time)."""
