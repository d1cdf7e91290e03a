"""How many IMAP commands a mailbox watcher may spend: the default, and the provider presets'.

A budget (``mailprobe.probes.poll.Budget``) caps the commands spent on one awaited probe and the
commands of the session in any minute. Within it the watcher spends its looks where deliveries
land (``probes.poll``), so a larger budget buys a smaller arrival error. Measured on Postfix and
Dovecot (``bench/results/polite_watch.md``):

- ``SELF_HOSTED``, the ``DEFAULT``: a server the customer runs, or one that does not count
  commands; what an account gets when neither its config nor a preset says otherwise.
- The presets' watch limits (``mailprobe.agent.presets``): hosted providers that may throttle a
  busy session get fewer commands a minute, so the looks after the first second are sparser and
  the error a larger share of the delay.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from mailprobe.agent.presets import PRESETS
from mailprobe.probes.poll import Budget

SELF_HOSTED = Budget(per_probe=150, per_minute=300)
DEFAULT = SELF_HOSTED
BUDGETS: Mapping[str, Budget] = MappingProxyType({
    "self_hosted": SELF_HOSTED,
    **{
        name: Budget(preset.watch["max_commands_per_probe"], preset.watch["max_commands_per_minute"])
        for name, preset in PRESETS.items()
    },
})  # fmt: skip
"""By name (``self_hosted`` or a preset's provider), for the benchmark and the tests."""
