"""Feast without typeguard's instrumentation of its classes, for the processes crm-intel starts.

Feast decorates its definition classes (``FeatureView``, ``Entity``, the data sources, ...) with
typeguard's ``@typechecked``, which re-reads, rewrites and recompiles every annotated method of
those classes when Feast is imported: measured on this project's machine, 4.5 of the 9 s a
process spends importing the scoring service, paid twice by every ``bentoml serve`` (its
supervisor and its worker both import the service) and once by every command that reaches Feast.

typeguard's own switch for production is ``python -O``, under which ``@typechecked`` returns what
it decorates unchanged (typeguard 4, "a no-op in optimized mode"). That switch cannot be thrown
for Feast alone: it also strips every ``assert`` of every package, and it reads a second set of
compiled files that an installation without bytecode writing recompiles at every start (slower
than the instrumentation it saves). So the entry points (the CLI before any command, the service
module before its imports) call :func:`skip_feast_typechecks`, which replaces
``typeguard.typechecked`` with a decorator that does what ``-O`` does for Feast's modules only and
hands everything else to typeguard unchanged. Nothing in the ``features`` package calls it at
import: a notebook or a test that imports crm-intel's packages keeps Feast's checks, unless it
imports the service module before Feast.

This goes around typeguard's public API (it has no per-package switch; typeguard issue #468
asks for a lazy one); the checks it skips guard arguments Feast receives from the definitions in
``features/``, which mypy checks and the feature store tests build.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import typeguard

_TYPECHECKED = typeguard.typechecked  # typeguard's own decorator, kept for every other module


def _is_feast_module(name: str) -> bool:
    return name == "feast" or name.startswith("feast.")


def _typechecked_except_feast(target: Any = None, **options: Any) -> Any:
    """typeguard's ``typechecked`` for every module but Feast's; Feast's targets unchanged."""
    if target is None:  # used as @typechecked(option=...)
        return functools.partial(_typechecked_except_feast, **options)
    if _is_feast_module(getattr(target, "__module__", None) or ""):
        return target
    return _TYPECHECKED(target, **options)


def skip_feast_typechecks() -> bool:
    """Have Feast's modules imported from now on skip typeguard's instrumentation.

    Returns:
        True when Feast is still to be imported (the skip takes effect); False when it was
        imported already (its classes stay as typeguard made them; nothing is changed).
    """
    if any(_is_feast_module(name) for name in sys.modules):
        return False
    typeguard.typechecked = _typechecked_except_feast
    return True
