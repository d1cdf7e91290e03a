"""Arrival stamps from the bracket, and the per-session verdict on IDLE pushes (probes/stamp.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailprobe.probes.stamp import NEEDED, PROMPT, TRIES, Bracket, Push, PushCheck, stamp


def test_the_stamp_is_the_middle_and_the_bound_half_the_width() -> None:
    """Not there at 10.0, announced at 10.1: 10.05 +- 0.05."""
    s = stamp(10.0, 10.1, sent_at=5.0)
    assert s.at == pytest.approx(10.05)
    assert s.error == pytest.approx(0.05)


def test_nothing_arrives_before_it_was_sent() -> None:
    """A last look before the send time: the bracket starts at the send."""
    s = stamp(1.0, 10.1, sent_at=10.0)
    assert (s.at, s.error) == (pytest.approx(10.05), pytest.approx(0.05))


def test_an_announcement_older_than_the_send_never_stamps_before_it() -> None:
    """A stale announcement (before the probe was sent) cannot put its arrival before its send:
    no negative delay."""
    s = stamp(1.0, 9.9, sent_at=10.0)
    assert s.at >= 10.0


def test_a_prompt_push_narrows_the_bracket_to_its_bound() -> None:
    """A push known to come within 20 ms: 19.99 +- 0.01 whatever the last look."""
    s = stamp(0.0, 20.0, sent_at=0.0, push_bound=0.02)
    assert (s.at, s.error) == (pytest.approx(19.99), pytest.approx(0.01))


@given(st.floats(0, 100), st.floats(0, 100), st.floats(0, 100), st.floats(0, 100))
def test_the_truth_is_always_within_the_bound(lo: float, gap: float, sent: float, t: float) -> None:
    """Any arrival in (max(lo, sent), hi] lies within at +- error."""
    hi = max(lo, sent) + gap
    truth = max(lo, sent) + min(t, gap)
    s = stamp(lo, hi, sent)
    assert abs(s.at - truth) <= s.error + 1e-9


def test_the_bracket_only_moves_forward_until_a_new_selection() -> None:
    """A look older than the last one changes nothing; reset starts again."""
    b = Bracket()
    b.looked(5.0)
    b.looked(3.0)
    assert b.lo == 5.0
    b.reset(1.0)
    assert b.lo == 1.0


def test_three_prompt_pushes_make_the_session_prompt() -> None:
    """Notices within PROMPT of the last look, NEEDED times: prompt, bound the slowest."""
    check = PushCheck()
    for since in (0.004, 0.012, 0.007)[:NEEDED]:
        assert check.calibrating
        check.pushed(since)
    assert check.state is Push.PROMPT
    assert check.bound == pytest.approx(0.012)


def test_a_look_that_beats_idle_makes_the_session_late_at_once() -> None:
    """Dovecot: the NOOP saw what IDLE held back: late, no bound, and it stays late."""
    check = PushCheck()
    check.pushed(0.004)
    check.polled()
    assert (check.state, check.bound) == (Push.LATE, None)
    for _ in range(NEEDED):
        check.pushed(0.001)
    assert check.state is Push.LATE


def test_slow_pushes_leave_the_session_late_after_its_tries() -> None:
    """Notices too long after the last look prove nothing: undecided, then late."""
    check = PushCheck()
    for _ in range(TRIES):
        check.pushed(PROMPT * 10)
    assert check.state is Push.LATE


def test_a_prompt_session_whose_look_finds_unannounced_mail_becomes_late() -> None:
    """The verifying looks keep a prompt verdict honest."""
    check = PushCheck()
    for _ in range(NEEDED):
        check.pushed(0.001)
    check.polled()
    assert check.state is Push.LATE
