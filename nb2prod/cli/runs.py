"""``nb2prod runs``, ``status``, ``logs``, ``cancel``."""
