"""Samples of the delay-precision benchmark, their statistics and the Markdown/CSV write-up."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import platform
import shlex
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench import peer_check

MAILPROBE, PEER = "mailprobe", "check_email_delivery"
TARGET = 0.1  # seconds: p99 absolute error at every injected delay


@dataclass(frozen=True, slots=True)
class Sample:
    """One probe of one tool: what it reported and what the Maildir says."""

    tool: str
    injected: float  # seconds between the tool's send time and the release from hold
    key: str  # mailprobe probe id or the peer's token
    sent_at: float  # the tool's own send time (mailprobe: sent_at; peer: its token's time)
    released_at: float | None = None
    reported_delay: float | None = None  # the tool's delay figure
    truth_at: float | None = None  # inotify: the file appeared in new/
    truth_ctime: float | None = None  # the file's ctime (cross-check)
    cpu_seconds: float | None = None
    imap_commands: int | None = None
    status: str = "ok"
    lane: str = ""

    @property
    def true_delay(self) -> float | None:
        return None if self.truth_at is None else self.truth_at - self.sent_at

    @property
    def signed_error(self) -> float | None:
        """Reported minus true delay (positive: the tool saw it late)."""
        if self.status != "ok" or self.reported_delay is None or self.true_delay is None:
            return None
        return self.reported_delay - self.true_delay

    @property
    def error(self) -> float | None:
        signed = self.signed_error
        return None if signed is None else abs(signed)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True, slots=True)
class Errors:
    """Absolute-error figures of one tool at one injected delay (seconds)."""

    n: int
    failed: int
    p50: float
    p99: float
    max: float
    bias: float  # mean signed error
    true_delay: float  # mean

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> Errors:
        picked = list(samples)
        errors = [s.error for s in picked if s.error is not None]
        signed = [s.signed_error for s in picked if s.signed_error is not None]
        true = [s.true_delay for s in picked if s.true_delay is not None]
        return cls(
            n=len(errors),
            failed=len(picked) - len(errors),
            p50=percentile(errors, 50),
            p99=percentile(errors, 99),
            max=max(errors, default=math.nan),
            bias=sum(signed) / len(signed) if signed else math.nan,
            true_delay=sum(true) / len(true) if true else math.nan,
        )


def _mean(values: Iterable[float | int | None]) -> float:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else math.nan


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.0f}"


def _ratio(peer: float, ours: float) -> str:
    if math.isnan(peer) or math.isnan(ours) or ours <= 0:
        return "-"
    return f"{peer / ours:.0f}x"


def _num(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def write_csv(samples: Sequence[Sample], path: Path) -> None:
    """Every sample, one row each, for anyone who wants other statistics."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = [f.name for f in dataclasses.fields(Sample)] + ["true_delay", "error"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for s in samples:
            row = [*dataclasses.astuple(s), s.true_delay, s.error]
            writer.writerow("" if v is None else f"{v:.6f}" if isinstance(v, float) else v
                            for v in row)  # fmt: skip


def _sh(*argv: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def _machine() -> str:
    model = "?"
    with Path("/proc/cpuinfo").open() as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{len(os.sched_getaffinity(0))} CPUs (nproc), {model}, Linux {platform.release()}"


def _versions() -> list[str]:
    debs = ["postfix", "dovecot-imapd", "monitoring-plugins-contrib", "libmail-imapclient-perl",
            "libio-socket-ssl-perl", "inotify-tools", "perl"]  # fmt: skip
    deb = ", ".join(f"{name} {_sh('dpkg-query', '-W', '-f=${Version}', name)}" for name in debs)
    peer = ", ".join(f"{k} {v}" for k, v in peer_check.versions().items())
    mailprobe = metadata.version("mailprobe") if _installed("mailprobe") else "source tree"
    return [
        f"mailprobe {mailprobe} (commit {_sh('git', 'rev-parse', '--short', 'HEAD')}), "
        f"Python {platform.python_version()}, aioimaplib {metadata.version('aioimaplib')}, "
        f"aiosmtplib {metadata.version('aiosmtplib')}",
        f"Debian packages: {deb}",
        f"peer scripts: {peer}",
    ]


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def _command(args: argparse.Namespace) -> str:
    return " ".join(["python -m bench.delay_precision", *map(shlex.quote, args.given)])


def _mix(counter: Counter[str], probes: int) -> str:
    if not probes:
        return "-"
    return ", ".join(f"{name} {count / probes:.1f}" for name, count in counter.most_common())


def _fast_poll(age: float) -> float:
    """mailprobe's planned interval between looks at a probe's age, at the default budget."""
    # Imported here: bench/polite_watch.py shares this module with mailprobe from before budgets.
    from mailprobe.probes.imap import WatchPolicy
    from mailprobe.probes.poll import plan

    pol = WatchPolicy()
    return 2 * plan(pol.budget, pol.schedule, sparse=pol.sparse.count).half_width(age)


def _error_table(samples: Sequence[Sample], tools: list[str], delays: list[float]) -> list[str]:
    head = "| injected delay | true delay, mailprobe (mean) | mailprobe poll interval at that age |"
    rule = "|---:|---:|---:|"
    for tool in tools:
        head += f" {tool} p50 | p99 | max |"
        rule += "---:|---:|---:|"
    if len(tools) == 2:
        head += " ratio p50 | ratio p99 | ratio max |"
        rule += "---:|---:|---:|"
    lines = [head, rule]
    groups = [(f"{d:g} s", d) for d in delays] + [("**all**", None)]
    for label, delay in groups:
        picked = [s for s in samples if delay is None or s.injected == delay]
        errs = [Errors.of(s for s in picked if s.tool == tool) for tool in tools]
        true = _mean(s.true_delay for s in picked if s.tool == MAILPROBE)
        poll = "" if delay is None else f"{_ms(_fast_poll(delay))}"
        row = f"| {label} | {_num(true, 3)} s | {poll} |"
        row += "".join(f" {_ms(e.p50)} | {_ms(e.p99)} | {_ms(e.max)} |" for e in errs)
        if len(errs) == 2:
            ours, peer = errs
            row += f" {_ratio(peer.p50, ours.p50)} | {_ratio(peer.p99, ours.p99)} |"
            row += f" {_ratio(peer.max, ours.max)} |"
        lines.append(row)
    return lines


def _cost_table(samples: Sequence[Sample], tools: list[str], delays: list[float]) -> list[str]:
    head = "| injected delay |" + "".join(f" {t} CPU (ms) |" for t in tools)
    head += "".join(f" {t} IMAP commands |" for t in tools)
    lines = [head, "|---:|" + "---:|" * (2 * len(tools))]
    for label, delay in [(f"{d:g} s", d) for d in delays] + [("**all**", None)]:
        by = [[s for s in samples if s.tool == t and (delay is None or s.injected == delay)]
              for t in tools]  # fmt: skip
        row = f"| {label} |"
        row += "".join(f" {_num(_mean(s.cpu_seconds for s in b) * 1000)} |" for b in by)
        row += "".join(f" {_num(_mean(s.imap_commands for s in b))} |" for b in by)
        lines.append(row)
    return lines


def render(
    samples: Sequence[Sample],
    mixes: dict[str, Counter[str]],
    args: argparse.Namespace,
    run: Sequence[str] = (),
) -> str:
    """The Markdown write-up; `run` adds lines to its Run section."""
    delays = sorted({s.injected for s in samples})
    tools = [t for t in (MAILPROBE, PEER) if any(s.tool == t for s in samples)]
    mine = {d: Errors.of(s for s in samples if s.tool == MAILPROBE and s.injected == d)
            for d in delays}  # fmt: skip
    met = all(e.p99 <= TARGET and e.failed == 0 for e in mine.values())
    title = " and ".join(tools)
    lines = [
        f"# Arrival-time precision: {title} on held mail",
        "",
        "Each probe is held by Postfix and released a known time after it was sent; the truth is "
        "the moment its file appears in the recipient's Maildir `new/`. Error = |reported delay - "
        "true delay|, in milliseconds. Target: mailprobe p99 ≤ 100 ms at every injected delay: "
        f"**{'met' if met else 'missed'}**.",
        "",
        *_error_table(samples, tools, delays),
        "",
    ]
    for tool in tools:
        errs = {d: Errors.of(s for s in samples if s.tool == tool and s.injected == d)
                for d in delays}  # fmt: skip
        lines.append(
            f"{tool}: samples with an error figure "
            + ", ".join(f"{d:g} s: {e.n}/{e.n + e.failed}" for d, e in errs.items())
            + "; mean signed error (ms, positive = seen late) "
            + ", ".join(f"{d:g} s: {_ms(e.bias)}" for d, e in errs.items())
            + ".  "
        )
    lines += ["", "## Cost per probe", "", *_cost_table(samples, tools, delays), ""]
    for tool in tools:
        probes = sum(1 for s in samples if s.tool == tool and s.imap_commands is not None)
        lines.append(f"IMAP command mix per probe, {tool}: "
                     f"{_mix(mixes.get(tool, Counter()), probes)}.  ")  # fmt: skip
    lines += [
        "",
        *_method(samples, args),
        "",
        "## Run",
        "",
        "```",
        "bash tests/mailstack/install.sh && bash bench/install.sh   # as root, once",
        _command(args),
        "```",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {_machine()}",
        *(f"- {line}" for line in run),
        *(f"- {v}" for v in _versions()),
    ]
    failures = [s for s in samples if s.status != "ok"]
    if failures:
        lines += ["", "## Samples without an error figure", ""]
        lines += [f"- {s.tool}, {s.injected:g} s: {s.status}" for s in failures]
    return "\n".join(lines) + "\n"


def _ctime_check(samples: Sequence[Sample]) -> str:
    """How far the inotify stamps trail the files' ctimes, and what that does to the errors."""
    lag = [s.truth_at - s.truth_ctime for s in samples
           if s.truth_at is not None and s.truth_ctime is not None]  # fmt: skip
    text = (
        f"the file's ctime (set by the kernel at the rename into `new/`) was "
        f"{_ms(min(lag, default=math.nan))} to {_ms(max(lag, default=math.nan))} ms before that "
        f"stamp (p50 {_ms(percentile(lag, 50))} ms, p99 {_ms(percentile(lag, 99))} ms); errors "
        "taken against the ctime instead differ by at most"
    )
    for tool in (MAILPROBE, PEER):
        shift = [abs(abs(s.sent_at + s.reported_delay - s.truth_ctime) - s.error)
                 for s in samples if s.tool == tool and s.error is not None
                 and s.reported_delay is not None and s.truth_ctime is not None]  # fmt: skip
        if shift:
            text += f" {_ms(max(shift))} ms for {tool},"
    return text.rstrip(",") + "."


def _peer_method(args: argparse.Namespace) -> str:
    return (
        "- check_email_delivery: `--plugin` mode, check_smtp_send `--tls` (STARTTLS submission) "
        "then check_imap_receive `--tls` (implicit TLS, CA via `--ssl-ca-file` and "
        "SSL_CERT_FILE) searching the Subject for `%TOKEN1%` (format `U-hhhhhhhh`: its --hires "
        f"start time + random hex), `--hires`, `--wait {args.peer_wait}`, "
        f"`--imap-check-interval {args.peer_interval}`, `--imap-retries {args.peer_retries}` "
        "(its options take whole seconds; `--wait 0` falls back to 5 s). In --plugin mode it "
        "reports `delay=0s` and `elapsed` (its start -> message found, deleted, logged out): "
        "elapsed is its delay figure. True delay = file time - the start time in its token. "
        f"{args.peer_lanes} lane(s) ran in parallel, each one run at a time to its own "
        "mailbox, alongside mailprobe."
    )


def _method(samples: Sequence[Sample], args: argparse.Namespace) -> list[str]:
    return [
        "## How it was measured",
        "",
        "- Mail stack: tests/mailstack (Postfix + Dovecot 2.3 on 127.0.0.1). Postfix holds every "
        "message with `X-Mailprobe-Hold: yes`; the bench finds it in the hold queue, reads the "
        "tool's send time from it and releases it (`postsuper -H`, `postqueue -i`) at send time + "
        "the injected delay.",
        "- Ground truth: `inotifywait --monitor` (inotify-tools) on each recipient's `new/`; a "
        "reader thread stamps each line with `time.time()` as it arrives and reads the file's "
        "header to tell which probe it is. Cross-check: " + _ctime_check(samples),
        "- mailprobe: the in-process Agent (probe-once mode: one watcher on alice, submissions "
        "from bob, default watch policy, STARTTLS on both sides), one probe at a time, so each "
        "probe is watched alone. True delay = file time - Probe.sent_at; reported delay = "
        "Probe.delay_seconds.",
        *([] if not any(s.tool == PEER for s in samples) else [_peer_method(args)]),
        f"- Schedule: {args.count} probes per tool and injected delay, delays shuffled "
        f"(seed {args.seed}).",
        "- CPU: mailprobe = CPU time of the agent's own thread and event loop "
        "(`time.thread_time()`, the bench harness runs on other threads) from one probe's start "
        "to the next; check_email_delivery = user + system time of its process and the plugin "
        "processes it waited for (`os.wait4`).",
        "- IMAP commands: counted by the server for both: Dovecot logs every finished command "
        "(`log_debug = event=imap_command_finished`) with user and session; LOGIN is counted "
        "from imap-login's `Login:` line; pre-login CAPABILITY/STARTTLS are not logged, for "
        "either. mailprobe keeps one session (logged in before the run), so its figure is all "
        "commands of alice's session from one probe's start to the next (IDLE included); each "
        "check_email_delivery run is one session of its own.",
        f"- p99 of {args.count} samples is interpolated between the two largest: read it as "
        "close to the worst case.",
    ]


def write_report(
    samples: Sequence[Sample],
    mixes: dict[str, Counter[str]],
    args: argparse.Namespace,
    path: Path,
    run: Sequence[str] = (),
) -> None:
    """Write the Markdown write-up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(samples, mixes, args, run))
