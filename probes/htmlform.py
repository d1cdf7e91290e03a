"""Find a login form in an HTML page and the fields it would submit, as a browser would.

Only what a login needs: each form's action and the name/value pairs of its inputs, so hidden
fields such as CSRF tokens go along with the credentials. Parsed with the standard library's
tolerant HTMLParser, which never raises on broken markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

# Inputs a browser submits with their value; buttons are left out because no button is clicked.
_VALUE_TYPES = frozenset(
    {"", "text", "hidden", "email", "password", "search", "tel", "url", "number"}
)
_CHECKED_TYPES = frozenset({"checkbox", "radio"})


@dataclass(slots=True)
class Form:
    """One <form>: where it posts and the fields it carries, in document order."""

    action: str
    fields: list[tuple[str, str]] = field(default_factory=list)

    def has_field(self, name: str) -> bool:
        """The form has an input called `name`."""
        return any(key == name for key, _ in self.fields)

    def submission(self, values: dict[str, str]) -> list[tuple[str, str]]:
        """The form's fields with `values` filled in (added where the form lacks them)."""
        out = [(key, values.get(key, value)) for key, value in self.fields]
        out += [(key, value) for key, value in values.items() if not self.has_field(key)]
        return out


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {key: value or "" for key, value in attrs}
        if tag == "form":
            self._open = Form(action=attr.get("action", ""))
            self.forms.append(self._open)
        elif tag == "input" and self._open is not None and attr.get("name"):
            kind = attr.get("type", "").lower()
            if kind in _VALUE_TYPES or (kind in _CHECKED_TYPES and "checked" in attr):
                self._open.fields.append((attr["name"], attr.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def find_form(html: str, field_name: str) -> Form | None:
    """The first form with an input called `field_name` (e.g. the password field), or None."""
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return next((form for form in parser.forms if form.has_field(field_name)), None)
