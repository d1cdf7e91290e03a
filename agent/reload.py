"""Reload: the config re-read while the agent runs (SIGHUP, or POST /-/reload from the machine).

All or nothing, as Prometheus reloads: the new file is read and checked the way `mailprobe run`
checks it; if it cannot be used, or it changes something that only a restart can apply, the
running config stays, every problem is logged, and ``mailprobe_config_last_reload_successful`` is
0. Otherwise it is applied, and the gauge is 1 with
``mailprobe_config_last_reload_success_timestamp_seconds`` the moment it was.

Applied live (``plan`` tells which):

- routes added (their loops start at their next grid point), removed (their loops end once a
  submission they may be running has ended) or changed (new interval, jitter, overdue_after,
  lost_after: the loop starts again with them). A route moved to other accounts (``from`` or
  ``to``) is removed and added under its name. Probes in flight stay in flight, also those of a
  route removed (they keep its marks and are matched should they arrive, but say nothing any
  more); counters, totals and histograms carry on; a removed route's open outage ends at the
  reload (it is no longer observed).
- accounts added or removed, and changed ones (servers, passwords): submissions use the new
  settings; the watcher of a changed receiving account is replaced, the old session watching on
  until the new one is up, so probes awaited there are seen arriving, not found late.
- ``fleet.quorum``, ``agent.extra_headers`` and ``agent.shutdown_grace``.

Everything else (``agent.listen``, ``agent.state_dir``, the secret, the vantage, the web config,
the log format, ``sla``, ``maintenance`` and any other section) needs a restart: such a reload is
refused with a line per key saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Gauge

from mailprobe.agent.config import Config, load_config
from mailprobe.agent.config_base import ConfigError
from mailprobe.agent.config_types import shown
from mailprobe.agent.endpoints import imap_endpoint, smtp_endpoint
from mailprobe.agent.startup import config_lines

if TYPE_CHECKING:
    from mailprobe.agent.runtime import Agent
    from mailprobe.agent.watchers import Watch

log = logging.getLogger(__name__)

LIVE_SECTIONS = frozenset({"agent", "accounts", "routes", "fleet"})
"""Top-level sections a reload may change (``agent`` only in ``LIVE_AGENT_KEYS``)."""
LIVE_AGENT_KEYS = frozenset({"extra_headers", "shutdown_grace"})
_SHOWN_VALUES = frozenset({"listen", "state_dir", "web_config_file", "log_format", "log_level",
                           "max_concurrency", "ledger_retention", "foreign_probe_max_age"})  # fmt: skip
_CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a new config changes, and what of it cannot be applied live."""

    restart: tuple[str, ...] = ()  # one line per key that needs a restart
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()  # same accounts, other settings
    moved: tuple[str, ...] = ()  # other `from` or `to`: removed and added again
    accounts: frozenset[str] = frozenset()  # accounts whose settings or passwords changed

    @property
    def retired(self) -> tuple[str, ...]:
        """Routes whose accounting of before ends: removed, or moved to other accounts."""
        return self.removed + self.moved

    def describe(self) -> str:
        """What the reload changes, in words."""
        parts = [f"{what} {', '.join(names)}" for what, names in (
            ("routes added:", self.added), ("removed:", self.removed),
            ("changed:", self.changed + self.moved), ("accounts changed:", tuple(sorted(self.accounts))),
        ) if names]  # fmt: skip
        return "; ".join(parts) or "no route or account changed"


def plan(
    old: Config, new: Config, *, changed_accounts: frozenset[str] = frozenset(),
    secret_changed: bool = False,
) -> ReloadPlan:  # fmt: skip
    """Compare the running config with a new one; ``changed_accounts`` and ``secret_changed``
    say what the config objects cannot (passwords and the secret are read from elsewhere)."""
    restart: list[str] = []
    for key in type(old).model_fields:
        if key not in LIVE_SECTIONS and getattr(old, key) != getattr(new, key):
            restart.append(f"{key}: changed; a restart is needed to apply it")
    for key in type(old.agent).model_fields:
        before, after = getattr(old.agent, key), getattr(new.agent, key)
        if key in LIVE_AGENT_KEYS or before == after:
            continue
        values = f" ({shown(str(before))} -> {shown(str(after))})" if key in _SHOWN_VALUES else ""
        restart.append(f"agent.{key}: changed{values}; a restart is needed to apply it")
    if secret_changed and not any(r.startswith("agent.secret") for r in restart):
        restart.append("agent.secret: the probe-signing secret changed; a restart is needed to "
                       "apply it")  # fmt: skip
    before = {r.name: r for r in old.routes}
    after = {r.name: r for r in new.routes}
    moved = tuple(n for n in after if n in before
                  and (before[n].from_, before[n].to) != (after[n].from_, after[n].to))  # fmt: skip
    accounts = frozenset(
        name for name in old.accounts.keys() & new.accounts.keys()
        if old.accounts[name] != new.accounts[name] or name in changed_accounts
    )  # fmt: skip
    return ReloadPlan(
        restart=tuple(restart),
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        changed=tuple(n for n in after if n in before and n not in moved and before[n] != after[n]),
        moved=moved,
        accounts=accounts,
    )


class Reloader:
    """Re-reads ``path`` into a running agent; exports how the last reload went."""

    def __init__(
        self, agent: Agent, path: Path, prepare: Callable[[Config], Config] = lambda c: c
    ) -> None:
        self._agent = agent
        self._path = path
        self._prepare = prepare  # the command line's overrides (`run --vantage`)
        self._lock = asyncio.Lock()
        self.wanted = asyncio.Event()  # SIGHUP sets it; `run` reloads
        self._ok = Gauge(
            "mailprobe_config_last_reload_successful",
            "1 when the last config reload was applied (or none was asked for), 0 when it failed.",
            registry=agent.registry,
        )
        self._when = Gauge(
            "mailprobe_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded: the start, or the last reload that was applied.",
            registry=agent.registry,
        )
        self._ok.set(1)
        self._when.set(agent.clock.time())

    async def run(self) -> None:
        """Reload each time ``wanted`` is set (a signal handler sets it), until cancelled."""
        while True:
            await self.wanted.wait()
            self.wanted.clear()
            await self.reload()

    async def reload(self) -> tuple[bool, str]:
        """Read and apply the config file; (applied, what happened in words)."""
        async with self._lock:
            ok, text = await self._reload()
        self._ok.set(1 if ok else 0)
        if ok:
            self._when.set(self._agent.clock.time())
        return ok, text

    async def _reload(self) -> tuple[bool, str]:
        agent = self._agent
        if agent.supervisor is None or agent.stopping:
            return False, "the agent is not running"
        try:
            new = self._prepare(load_config(self._path))
        except ConfigError as exc:
            return self._refused(config_lines(exc))
        try:
            secret = new.agent.secret()
            changed = self._changed_accounts(new)
        except LookupError as exc:  # a secret that vanished after it was checked
            return self._refused([f"{self._path}: {exc}"])
        steps = plan(agent.config, new, changed_accounts=changed,
                     secret_changed=secret != agent.secret)  # fmt: skip
        if steps.restart:
            return self._refused([f"{self._path}: {line}" for line in steps.restart])
        await self._apply(new, steps)
        text = f"config reloaded from {self._path}: {steps.describe()}"
        log.info("%s", text)
        return True, text

    def _refused(self, problems: list[str]) -> tuple[bool, str]:
        for problem in problems:
            log.error("config reload failed, the running config stays: %s", problem)
        return False, "\n".join(["config reload failed, the running config stays:", *problems])

    def _changed_accounts(self, new: Config) -> frozenset[str]:
        """Accounts whose endpoints (passwords read again) differ from the ones in use."""
        agent = self._agent
        out = set()
        for name, account in new.accounts.items():
            if account.smtp is not None and agent.submitter.endpoint(name) not in (
                None, smtp_endpoint(account.smtp, agent.tokens, account.address),
            ):  # fmt: skip
                out.add(name)
            watch = agent.watchers.watches.get(name)
            imap = account.imap
            if (
                watch is not None
                and imap is not None
                and (watch.watcher.endpoint != imap_endpoint(imap, account.address, agent.tokens))
            ):
                out.add(name)
        return frozenset(out)

    async def _apply(self, new: Config, steps: ReloadPlan) -> None:
        """Apply a plan with nothing that needs a restart (see the module doc)."""
        agent = self._agent
        sup = agent.supervisor
        assert sup is not None  # noqa: S101 - checked by _reload
        phases = {name: agent.scheduler.phase(name) for name in steps.changed}
        for name in (*steps.removed, *steps.moved, *steps.changed):
            agent.scheduler.retire(name)
        agent.books.reconfigure(new, retired=steps.retired)
        accounts = [(name, proto) for name, acc in new.accounts.items()
                    for proto in ("smtp", "imap") if getattr(acc, proto) is not None]  # fmt: skip
        agent.metrics.set_routes((r.name for r in new.routes), accounts)
        agent.submitter.reconfigure(new)
        agent.config = new
        started, stopped = agent.watchers.reconfigure(new, steps.accounts)
        successors = {watch.account: watch for watch in started}
        for watch in stopped:
            name = f"watcher:{watch.account}"
            successor = successors.get(watch.account)
            if successor is None:
                await _stop(sup.stop(name), watch)
                continue
            # A changed account: the old session watches on until the new one is up, so the
            # probes awaited there are seen arriving, not found late at the new login.
            old = sup.detach(name)
            sup.start(f"handover:{watch.account}",
                      functools.partial(_hand_over, old, watch, successor, new))  # fmt: skip
        for watch in started:
            sup.start(f"watcher:{watch.account}", watch.watcher.run)
        fresh = {*steps.added, *steps.moved, *steps.changed}
        count = len(new.routes)
        for index, route in enumerate(new.routes):
            if route.name not in fresh:
                continue
            phase = phases.get(route.name)
            agent.scheduler.add(route, index / count if phase is None else phase)
            sup.start(f"route:{route.name}", functools.partial(agent.scheduler.run, route,
                                                                resume=True))  # fmt: skip


async def _stop(task: asyncio.Task[None] | None, watch: Watch) -> None:
    """End a watcher's task (cancelled: wait for it to end) and log out of its session."""
    if task is not None:
        task.cancel()
        await asyncio.wait({task}, timeout=_CLOSE_TIMEOUT)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watch.watcher.close(), _CLOSE_TIMEOUT)
    log.info("stopped watching account=%s", watch.account)


async def _hand_over(
    old: asyncio.Task[None] | None, watch: Watch, successor: Watch, config: Config
) -> None:
    """Stop the replaced watcher once its successor has a session, or after the account's IMAP
    timeout and a reconnect if the new settings do not work (the new watcher then says so)."""
    imap = config.accounts[successor.account].imap
    timeout = (imap.timeout if imap is not None else 30.0) + _CLOSE_TIMEOUT
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not successor.watcher.up and loop.time() < deadline:  # noqa: ASYNC110 - no event for it
        await asyncio.sleep(0.05)
    await _stop(old, watch)
