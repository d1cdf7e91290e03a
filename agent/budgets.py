"""How many IMAP commands a mailbox watcher may spend: the budgets the provider presets choose from.

A budget (``mailprobe.probes.poll.Budget``) caps the commands spent on one awaited probe and the
commands of the session in any minute. Within it the watcher spends its looks where deliveries
land (``probes.poll``), so a larger budget buys a smaller arrival error. Measured on Postfix and
Dovecot (``bench/results/polite_watch.md``):

- ``SELF_HOSTED``: a server the customer runs, or one that does not count commands. Arrival
  error p99 within max(25 ms, 2 % of the delay) up to a minute.
- ``HOSTED``: a hosted provider that may throttle a busy session (Microsoft 365, Gmail, Yahoo,
  the Chinese enterprise services): one command a second on average over a minute, a few
  percent of the delay as error.

``DEFAULT`` is what an account gets when neither its config nor a preset says otherwise.
"""

from __future__ import annotations

from mailprobe.probes.poll import Budget

SELF_HOSTED = Budget(per_probe=150, per_minute=300)
HOSTED = Budget(per_probe=60, per_minute=60)
DEFAULT = SELF_HOSTED
BUDGETS = {"self_hosted": SELF_HOSTED, "hosted": HOSTED}
"""By name, for presets and the benchmark."""
