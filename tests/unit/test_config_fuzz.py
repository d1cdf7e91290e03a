"""Property: whatever a config file holds, loading it gives a Config or a ConfigError whose
problems are single lines of bounded length, never another exception (issue 11: 12 of 300 fuzzed
configs gave a traceback)."""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mailprobe.agent.config import Config, ConfigError, load_config, parse_config

MAX_PROBLEM = 600  # characters: a problem is one readable line, whatever the input's size


@dataclass(frozen=True)
class Deep:
    """A value nested `depth` lists deep (built late: YAML's own dumper would recurse)."""

    depth: int


def template(files: Path) -> dict[str, Any]:
    """A valid config with every section the loader knows."""
    endpoint = {"security": "starttls", "username": "probe@example.com",
                "password_file": str(files / "pw"), "timeout": "10s"}  # fmt: skip
    return {
        "agent": {"listen": "127.0.0.1:9478", "state_dir": str(files / "state"),
                  "secret_file": str(files / "secret"), "max_concurrency": 4,
                  "extra_headers": {"X-Filter": "probe"}, "ledger_retention": "400d"},
        "accounts": {
            "probe": {
                "address": "probe@example.com",
                "smtp": {"host": "smtp.example.com", "port": 587, "helo_name": "probe.example",
                         **endpoint},
                "imap": {"host": "imap.example.com", "port": 143, "mailbox": "INBOX",
                         "move_to": "Probes", "idle": True, "poll_interval": "30s", **endpoint},
                "service_hosts": ["*.example.com"],
            }
        },
        "routes": [{"name": "internal", "from": "probe", "to": "probe", "interval": "1m",
                    "jitter": "5s", "overdue_after": "1h", "lost_after": "1d"}],
        "sla": {"timezone": "Europe/Berlin", "disconnection_minutes": 44, "ratio_mode": False,
                "trouble_free_days": 360, "confirm_retry": "15s", "confirm_within": "2m",
                "remedies": {"delay": {"kind": "double_service_time", "coefficient": 1.0}},
                "compensation": {"contract_total": 12000, "currency": "EUR"}},
        "maintenance": [
            {"name": "nightly", "daily": True, "start": "02:00", "duration": "30m",
             "timezone": "Europe/Berlin", "routes": ["internal"]},
            {"name": "once", "start": "2026-10-01T00:00:00", "end": "2026-10-01T02:00:00"},
        ],
    }


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


PATHS = _paths(template(Path("/fuzz")))

ODD_TEXT = [
    "true", "yes", "on", "null", "~", "0", "-1", "1e400", ".inf", ".nan", "0s", "-5s", "1e400s",
    "1" + "0" * 400 + "s", "0.0001ms", "9999999w", "A" * 5000, "INBOX\r\n", "host\x00", "\u2028",
    "Europe/Berlin\x00", "../../etc/passwd", "127.0.0.1:99999", "[::1]:9478", "\ud800", "",
    "x" * 70, "mon", "25:99", "2026-13-45", "\x1b[31m", "é" * 300, "::", "a@b@c",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**18, -(10**18), 10**400, 2**63, 65536, 0, -1]),
    st.floats(),  # nan and both infinities included
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    st.sampled_from(ODD_TEXT),
    st.from_regex(r"\A[0-9]{1,410}(\.[0-9]{1,4})?(ms|s|m|h|d|w)\Z"),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.binary(max_size=8),
    st.builds(Deep, st.integers(1, 1200)),
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(string.ascii_lowercase + "_", max_size=12) | scalars, inner,
                      max_size=3),
    max_leaves=6,
)


def _nest(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def materialize(value: Any) -> Any:
    """Deep markers -> nested lists; only hashable things as keys."""
    if isinstance(value, Deep):
        return _nest(value.depth)
    if isinstance(value, dict):
        return {k if not isinstance(k, Deep) else "deep": materialize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [materialize(v) for v in value]
    return value


@st.composite
def mutated(draw: st.DrawFn, files: Path) -> dict[str, Any]:
    """The template with one to four random changes: values replaced, keys dropped or added,
    values wrapped in lists or mappings."""
    data = template(files)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            if not isinstance(parent, dict | list):
                continue
            current = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced this part
        action = draw(st.sampled_from(["replace", "replace", "odd", "drop", "add", "wrap"]))
        if action == "replace":
            parent[path[-1]] = draw(junk)
        elif action == "odd":  # the texts that once broke the loader, where text is expected
            parent[path[-1]] = draw(st.sampled_from(ODD_TEXT))
        elif action == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(current, dict):
            current[draw(st.text(max_size=10) | scalars)] = draw(junk)
        elif action == "wrap":
            parent[path[-1]] = draw(st.sampled_from([[current], {"x": current}]))
    return data


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The secret and password files the template refers to."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "secret").write_text("fuzz-secret\n")
    (root / "pw").write_text("fuzz-password\n")
    return root


def assert_clean(outcome: Config | ConfigError) -> None:
    """A Config, or problems that are each one line of bounded length."""
    if isinstance(outcome, Config):
        return
    assert outcome.problems, "a ConfigError lists at least one problem"
    for problem in outcome.problems:
        assert isinstance(problem, str)
        assert "\n" not in problem
        assert "\r" not in problem
        assert len(problem) <= MAX_PROBLEM, problem[:200]


def _yaml_text(data: Any) -> str:
    deep: dict[str, int] = {}

    def mark(value: Any) -> Any:
        if isinstance(value, Deep):
            token = f"DEEP{len(deep)}TOKEN"
            deep[token] = value.depth
            return token
        if isinstance(value, dict):
            return {mark(k) if isinstance(k, Deep) else k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = yaml.safe_dump(mark(data), allow_unicode=True, width=10**6)
    for token, depth in deep.items():
        text = text.replace(token, "[" * depth + "]" * depth)
    return text


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_config_data_raises_only_config_error(files: Path, data: st.DataObject) -> None:
    """parse_config on mutated data: a Config or a clean ConfigError."""
    config = materialize(data.draw(mutated(files)))
    try:
        outcome: Config | ConfigError = parse_config(config)
    except ConfigError as exc:
        outcome = exc
    assert_clean(outcome)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_config_files_raise_only_config_error(
    files: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """load_config on mutated YAML text, some of it with bytes spliced in (not UTF-8, NUL)."""
    raw = _yaml_text(data.draw(mutated(files))).encode("utf-8", "surrogatepass")
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(raw)))
        raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    path = files / "fuzzed.yaml"
    path.write_bytes(raw)
    try:
        outcome: Config | ConfigError = load_config(path)
    except ConfigError as exc:
        outcome = exc
    assert_clean(outcome)
