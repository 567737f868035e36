"""Runners: execute a pipeline spec on Ray with one :class:`~nb2prod.contracts.RunOptions`."""
