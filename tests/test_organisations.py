"""The table of the brief's organisations is one the register accepts, and
everything that lists them reads it."""

from __future__ import annotations

import math

from ceir import pki
from ceir.domain.model import OrgKind
from ceir.organisations import BRIEF_ORGANISATIONS, operators
from operators_sim.loader import REQUIRED_ORGS
from operators_sim.node import OPERATORS


def test_names_are_unique_and_kinds_are_the_registers() -> None:
    names = [org.name for org in BRIEF_ORGANISATIONS]
    assert len(set(names)) == len(names)
    assert {org.kind for org in BRIEF_ORGANISATIONS} == {kind.value for kind in OrgKind}


def test_operators_alone_have_network_codes_shares_and_short_names() -> None:
    for org in BRIEF_ORGANISATIONS:
        is_operator = org.kind == OrgKind.OPERATOR.value
        assert bool(org.mcc_mncs) == is_operator, org
        assert (org.market_share > 0) == is_operator, org
        assert bool(org.display) == is_operator, org
    assert math.isclose(sum(org.market_share for org in operators()), 1.0)


def test_certificates_and_the_simulation_read_the_table() -> None:
    assert [(o.name, o.kind, o.full_name) for o in pki.BRIEF_ORGANISATIONS] == [
        (o.name, o.kind, o.full_name) for o in BRIEF_ORGANISATIONS
    ]
    assert [(o.name, o.display, o.mcc_mncs, o.share) for o in OPERATORS] == [
        (o.name, o.display, o.mcc_mncs, o.market_share) for o in operators()
    ]
    assert set(REQUIRED_ORGS) == {org.name for org in BRIEF_ORGANISATIONS}
