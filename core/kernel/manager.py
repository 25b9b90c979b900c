"""The plugin manager factory: bundled and third-party plugins, loaded the same way.

Every plugin — bundled or not — is an entry point in the ``assay`` group. Entry points
are loaded one at a time, so a plugin that fails to import, or implements a hook that
does not exist (a misspelling), is reported and skipped instead of taking the CLI down;
``strict=True`` (``--strict-plugins``) makes such a failure fatal. ``-p no:NAME`` and
``ASSAY_DISABLE_PLUGINS=NAME,...`` block plugins; essential ones cannot be blocked.
``ASSAY_TRACE_PLUGINS=1`` prints every hook call to stderr: each plugin's part in it and
the whole call, with their durations.
"""

from __future__ import annotations

import difflib
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, TextIO

import pluggy

from assay.errors import BadInput, InternalError
from assay.kernel import hookspecs

ENTRY_POINT_GROUP = "assay"
TRACE_ENV = "ASSAY_TRACE_PLUGINS"
# The ledger and the gate cannot be switched off: a run without them would not be governed.
ESSENTIAL_PLUGINS = ("ledger", "policies")


@dataclass
class PluginInfo:
    """What ``assay plugins`` reports about one plugin."""

    name: str
    module: str
    distribution: str
    version: str
    status: str  # loaded | blocked | failed
    hooks: list[str] = field(default_factory=list)
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "hooks": self.hooks,
            "error": self.error,
        }


class HookTracer:
    """Writes one line per plugin implementation call and one per hook call, with durations.

    ``trace: evaluate <- fairness 41.3 ms`` says what one plugin's implementation took;
    ``trace: evaluate: 4 plugins, 180.2 ms`` closes the hook call. Hook calls may nest (a
    stage's progress reports arrive during ``fit_model``); the lines come in the order the
    calls finish.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._started: list[float] = []

    def _write(self, line: str) -> None:
        print(f"trace: {line}", file=self.stream or sys.stderr, flush=True)

    def before(self, hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self._started.append(time.perf_counter())

    def after(self, outcome: Any, hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        took = time.perf_counter() - self._started.pop()
        failed = " (raised)" if outcome.exception is not None else ""
        plural = "" if len(hook_impls) == 1 else "s"
        self._write(f"{hook_name}: {len(hook_impls)} plugin{plural}, {took * 1000:.1f} ms{failed}")

    def timed(self, hook_name: str, plugin_name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` (one plugin's hookimpl), reporting how long each call took."""

        def traced(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args)
            finally:
                self._write(f"{hook_name} <- {plugin_name} {(time.perf_counter() - started) * 1000:.1f} ms")

        return traced


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers what it loaded, blocked and rejected."""

    def __init__(self) -> None:
        super().__init__(ENTRY_POINT_GROUP)
        self.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self.tracer: HookTracer | None = None

    @property
    def failures(self) -> list[PluginInfo]:
        return [i for i in self.infos if i.status == "failed"]

    def trace_calls(self, stream: TextIO | None = None) -> None:
        """Report every hook call from now on (``ASSAY_TRACE_PLUGINS=1``), to ``stream`` or stderr."""
        self.tracer = HookTracer(stream)
        self.add_hookcall_monitoring(self.tracer.before, self.tracer.after)
        for plugin in self.get_plugins():
            self._trace_impls(plugin)

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        if self.tracer is not None:
            self._trace_impls(plugin)
        return registered

    def _trace_impls(self, plugin: object) -> None:
        assert self.tracer is not None
        for caller in self.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                # wrappers run around the others: timing their set-up alone would mislead
                if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                    # HookImpl is slotted and its field typed Final: swap the function in place
                    object.__setattr__(impl, "function", self.tracer.timed(caller.name, impl.plugin_name,
                                                                           impl.function))


def tracing_from_env() -> bool:
    return os.environ.get(TRACE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def disabled_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get("ASSAY_DISABLE_PLUGINS", "").split(",") if n.strip()}


def _unknown_hooks(pm: PluginManager, plugin: object) -> list[str]:
    """Hookimpls of ``plugin`` that match no hookspec (usually a misspelled name)."""
    unknown = []
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.spec is None:
            near = difflib.get_close_matches(caller.name, [n for n in dir(hookspecs) if not n.startswith("_")], 1)
            unknown.append(caller.name + (f" (did you mean {near[0]!r}?)" if near else ""))
    return unknown


def register_plugin(pm: PluginManager, plugin: ModuleType | object, name: str, *, strict: bool = False,
                    distribution: str = "", version: str = "", module: str = "") -> PluginInfo:
    """Register one plugin object, rejecting it if it implements unknown hooks."""
    info = PluginInfo(name=name, module=module or getattr(plugin, "__name__", type(plugin).__name__),
                      distribution=distribution, version=version, status="loaded")
    pm.register(plugin, name=name)
    unknown = _unknown_hooks(pm, plugin)
    if unknown:
        pm.unregister(plugin)
        info.status, info.error = "failed", f"implements unknown hook(s): {', '.join(unknown)}"
        if strict:
            raise InternalError(f"plugin {name!r}: {info.error}")
    else:
        info.hooks = sorted(c.name for c in pm.get_hookcallers(plugin) or [])
    pm.infos.append(info)
    return info


def make_plugin_manager(disabled: Iterable[str] = (), *, strict: bool = False,
                        extra_plugins: Iterable[tuple[str, object]] = ()) -> PluginManager:
    """Build a fresh plugin manager with every entry-point plugin that is not blocked.

    :param disabled: plugin names to block (``-p no:NAME``), added to ``ASSAY_DISABLE_PLUGINS``.
    :param strict: make a plugin that fails to load or validate fatal.
    :param extra_plugins: ``(name, plugin)`` pairs registered after the entry points (tests).
    """
    pm = PluginManager()
    if tracing_from_env():
        pm.trace_calls()
    blocked = set(disabled) | disabled_from_env()
    refused = blocked & set(ESSENTIAL_PLUGINS)
    if refused:
        raise BadInput(f"-p no:NAME / ASSAY_DISABLE_PLUGINS: plugin(s) {', '.join(sorted(refused))} are essential and cannot be disabled")
    seen: set[str] = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(ep.name)
        dist = ep.dist.name if ep.dist else ""
        version = ep.dist.version if ep.dist else ""
        if ep.name in blocked:
            pm.set_blocked(ep.name)
            pm.infos.append(PluginInfo(ep.name, ep.value, dist, version, "blocked"))
            continue
        try:
            plugin = ep.load()
            if isinstance(plugin, type):  # a class: one instance per manager, so its state lives as long as the manager
                plugin = plugin()
        except Exception as exc:
            if strict or ep.name in ESSENTIAL_PLUGINS:
                raise InternalError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc!r}") from exc
            pm.infos.append(PluginInfo(ep.name, ep.value, dist, version, "failed", error=f"failed to load: {exc!r}"))
            continue
        register_plugin(pm, plugin, ep.name, strict=strict, distribution=dist, version=version, module=ep.module)
    missing = [n for n in ESSENTIAL_PLUGINS if pm.get_plugin(n) is None]
    if missing:
        raise InternalError(f"essential plugin(s) {', '.join(missing)} are not installed; reinstall assay")
    for name, plugin in extra_plugins:
        if name not in blocked:
            register_plugin(pm, plugin, name, strict=strict)
    pm.check_pending()
    return pm
