"""The config of a fleet of agents: where this agent probes from, and how many must agree.

`agent.vantage` names the vantage point (the place and network the agent probes from): `name`
goes into every probe's signed headers, the ledger and `mailprobe_vantage_info`; `site` and
`region` only into the ledger and that series, to describe it. Without a name the vantage is
called by the agent's instance identity (agent/identity.py), which is stable across restarts.

`fleet.quorum` is how many vantage points must see a fault at the same time for it to count as
the provider's (default 2, or 1 while the fleet has a single vantage); a fault seen from fewer is
the customer's own network, which the contract excludes. Every agent exports it
(`mailprobe_quorum`) so the quorum rules read it, and `mailprobe report --ledger ...` reads it
from the config it is given.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from mailprobe.agent.config_types import one_line, shown
from mailprobe.probes.message import VANTAGE_NAME

DEFAULT_QUORUM = 2
"""Vantage points that must see a fault at once, unless `fleet.quorum` says otherwise."""
MAX_QUORUM = 64


def vantage_name(name: str) -> str:
    """Validator: a name that is a header token and a label value."""
    if not VANTAGE_NAME.fullmatch(name):
        raise ValueError(
            f"{shown(name)}: a vantage name uses letters, digits, '_', '-', '.' (at most 64)"
        )
    return name


VantageName = Annotated[StrictStr, AfterValidator(vantage_name)]
_Label = Annotated[StrictStr, Field(min_length=1, max_length=64), AfterValidator(one_line)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VantageSettings(_Model):
    """Where this agent probes from."""

    name: VantageName | None = None  # default: the agent's instance identity
    site: _Label | None = None
    region: _Label | None = None


class FleetSettings(_Model):
    """What the agents of a fleet agree on."""

    quorum: Annotated[StrictInt, Field(ge=1, le=MAX_QUORUM)] = DEFAULT_QUORUM


def quorum_for(quorum: int, vantages: int) -> int:
    """The quorum in effect for a fleet of `vantages`: never more than there are."""
    return max(1, min(quorum, vantages))
