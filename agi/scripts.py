"""Which dialog answers which FastAGI script path (``agi://host:4573/<script>?…``).

The FastAGI server looks the path up here when the AGI environment arrives: ``checkin``
and ``noreply`` are the inbound worker calls (:class:`ivr.dialog.Dialog`, effects run by
the call store's group-commit batcher); outbound calls register their own dialog and
effect runner (``alert`` from the alert chain, later ``notice`` and ``survey``). A path
nobody registered is answered by the check-in dialog, which records it as an error call.

A registered ``run_effect`` is a blocking function ``effect -> result`` that the server
runs through ``run_db`` (the database thread pool), never on the reactor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

DialogFactory = Callable[[Callable[[], float]], Any]


@dataclasses.dataclass(frozen=True)
class Script:
    name: str
    make_dialog: DialogFactory  # clock.seconds -> a sans-IO dialog (start/send/hangup/fail/effect_failed)
    run_effect: Callable[[Any], Any] | None = None  # None: the call store (ivr.callstore) via the batcher


class ScriptRegistry:
    def __init__(self) -> None:
        self._scripts: dict[str, Script] = {}

    def register(self, script: Script) -> None:
        if script.name in self._scripts:
            raise ValueError(f"FastAGI script {script.name!r} registered twice")
        self._scripts[script.name] = script

    def get(self, name: str | None) -> Script | None:
        return self._scripts.get(name or "")

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._scripts))

    def __contains__(self, name: object) -> bool:
        return name in self._scripts


def inbound_registry(config: Any) -> ScriptRegistry:
    """``checkin`` and ``noreply``: the worker's own calls, one dialog for both."""
    from ivr.dialog import SCRIPTS, Dialog

    registry = ScriptRegistry()
    for name in SCRIPTS:
        registry.register(Script(name, lambda clock, _c=config: Dialog(_c, clock)))
    return registry


# Modules whose ``fastagi_scripts(runtime) -> list[Script]`` add outbound dialogs to the
# server's registry (one line per feature: alerts now, notices and surveys next).
SCRIPT_MODULES: tuple[str, ...] = ("scheduler.alert_calls", "outreach.calls")


def registry_for(runtime: Any, config: Any, modules: tuple[str, ...] | None = None) -> ScriptRegistry:
    """The inbound scripts plus every registered feature's outbound scripts."""
    import importlib

    registry = inbound_registry(config)
    for name in SCRIPT_MODULES if modules is None else modules:
        for script in importlib.import_module(name).fastagi_scripts(runtime):
            registry.register(script)
    return registry
