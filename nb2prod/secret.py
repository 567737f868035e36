"""Secret parameters: where their values come from, and the one rule that they are stored and shown nowhere.

``--secret NAME`` marks parameter NAME secret; its value is given with ``-p NAME VALUE`` ("inline": it lives in
the memory of the process that runs, and reaches a detached runner through its environment, never a file).
``--secret NAME=ENV_VAR`` reads the value from environment variable ENV_VAR each time a run starts (every fire
of a schedule, every resume): what is stored is the reference, never the value. Stored options keep an inline
secret as the mask, so a replay (``resume``) asks for the value again instead of running with the mask.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from nb2prod.contracts import MASK
from nb2prod.errors import UsageError

REFERENCE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:=([A-Za-z_][A-Za-z0-9_]*))?")
# How a detached runner (``api.start_run``) receives inline secret values: its environment, read once.
INLINE_ENV = "NB2PROD_SECRET_VALUES"
# Query parameters of a URI that carry credentials (stripped before a URI is shown or sent anywhere).
CREDENTIAL_KEYS = re.compile(r"token|secret|password|passwd|pwd|key|signature|credential|auth", re.IGNORECASE)


def references(secrets: list[str]) -> dict[str, str | None]:
    """``{parameter: environment variable, or None for an inline value}`` of ``--secret`` entries."""
    refs: dict[str, str | None] = {}
    for entry in secrets:
        match = REFERENCE.fullmatch(entry)
        if not match:
            raise UsageError(f"--secret {entry!r}: give NAME (value from -p NAME VALUE) or NAME=ENV_VAR "
                             "(value read from that environment variable when the run starts)")
        refs[match.group(1)] = match.group(2)
    return refs


def names(secrets: list[str]) -> list[str]:
    """The parameter names of ``--secret`` entries (``NAME`` of ``NAME=ENV_VAR``); malformed entries are skipped."""
    return [m.group(1) for m in map(REFERENCE.fullmatch, secrets) if m]


def from_environment(secrets: list[str], parameters: dict[str, Any],
                     environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The text values of the environment-referenced secrets; a UsageError when one is also given inline, its
    variable is unset, or an inline secret holds only the mask (its value was never stored: give it again)."""
    values = {}
    for name, variable in references(secrets).items():
        if variable is None:
            if parameters.get(name) == MASK:
                raise UsageError(f"secret parameter {name!r} has no value: secret values are never stored, so a "
                                 f"resumed run needs it again (nb2prod run NOTEBOOK --resume RUN_ID -p {name} VALUE), "
                                 f"or give it as --secret {name}=ENV_VAR to read it from the environment")
            continue
        if name in parameters:
            raise UsageError(f"secret parameter {name!r} is given both with -p and as --secret {name}={variable}; "
                             "give it one way")
        if variable not in environ:
            raise UsageError(f"--secret {name}={variable}: environment variable {variable} is not set")
        values[name] = environ[variable]
    return values


def stored_parameters(parameters: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    """Parameters as they may be written anywhere: each secret's value replaced by the mask."""
    hidden = set(names(secrets))
    return {k: (MASK if k in hidden else v) for k, v in parameters.items()}


def inline_values(parameters: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    """The inline secret values among ``parameters`` (what a detached runner must be handed)."""
    return {k: parameters[k] for k, variable in references(secrets).items()
            if variable is None and k in parameters and parameters[k] != MASK}


def runner_environment(parameters: dict[str, Any], secrets: list[str]) -> dict[str, str]:
    """The environment of a detached runner: ours, plus its inline secret values (never written to disk)."""
    env = dict(os.environ)
    env.pop(INLINE_ENV, None)
    values = inline_values(parameters, secrets)
    if values:
        env[INLINE_ENV] = json.dumps(values)
    return env


def take_inline_values() -> dict[str, Any]:
    """In a detached runner: the inline secret values its starter handed over (removed from the environment,
    so nothing this process starts inherits them)."""
    text = os.environ.pop(INLINE_ENV, None)
    return json.loads(text) if text else {}


def resumed(before: dict[str, Any], parameters: dict[str, Any], secrets: list[str]) -> tuple[dict, list[str]]:
    """The parameters and secrets of a run resuming the run whose stored options are ``before``: its values
    (inline secrets as the mask, to be given again) and secret entries, except those given now."""
    refs = {**references(before.get("secrets", [])), **references(secrets)}
    kept = {k: v for k, v in before.get("parameters", {}).items() if not (v == MASK and refs.get(k))}
    return {**kept, **parameters}, [n if v is None else f"{n}={v}" for n, v in refs.items()]


def redact_uri(uri: str | None) -> str | None:
    """``uri`` without credentials: no ``user:password@`` (dropped) and no token/secret/password/key query values
    (masked)."""
    if not uri or "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return MASK
    if "@" not in parts.netloc and not any(CREDENTIAL_KEYS.search(k) for k, _ in pairs):
        return uri
    query = urlencode([(k, MASK if CREDENTIAL_KEYS.search(k) else v) for k, v in pairs], safe="*")
    host = parts.netloc.rpartition("@")[2]  # userinfo dropped: a password, or a bare user part that is a token
    return urlunsplit((parts.scheme, host, parts.path, query, parts.fragment))
