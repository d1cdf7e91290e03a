"""Finding the login form and the fields a browser would submit with it."""

from __future__ import annotations

from mailprobe.probes.htmlform import find_form

PAGE = """
<form action="/search"><input name="q" value="x"></form>
<form method="post" action="/login?next=inbox">
  <input type="hidden" name="_token" value="t0k3n">
  <input name="_user" value="">
  <input type="password" name="_pass">
  <input type="checkbox" name="remember" value="1">
  <input type="checkbox" name="secure" value="on" checked>
  <input type="submit" name="go" value="Log in">
  <select name="lang"><option>en</option></select>
</form>
"""


def test_the_form_with_the_password_field_is_chosen() -> None:
    """The first form holding the named field wins; forms without it are passed over."""
    form = find_form(PAGE, "_pass")
    assert form is not None
    assert form.action == "/login?next=inbox"
    assert find_form(PAGE, "missing") is None


def test_the_submission_keeps_hidden_and_checked_fields_in_order() -> None:
    """Hidden tokens and checked boxes go along; unchecked boxes and buttons do not."""
    form = find_form(PAGE, "_pass")
    assert form is not None
    assert form.submission({"_user": "alice", "_pass": "pw"}) == [
        ("_token", "t0k3n"), ("_user", "alice"), ("_pass", "pw"), ("secure", "on"),
    ]  # fmt: skip


def test_values_for_fields_the_form_lacks_are_added_and_broken_markup_is_tolerated() -> None:
    """An unclosed form still parses; a configured field it lacks is appended."""
    form = find_form('<form action=/s><input type=password name=p><input name="u"', "p")
    assert form is not None
    assert form.submission({"p": "pw", "extra": "1"}) == [("p", "pw"), ("extra", "1")]
