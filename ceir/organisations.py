"""The organisations of the brief, in one table.

Every demo, test and simulation that needs the brief's organisations reads
them here: the demo and the embedded CEIR create them in the register, the
demo PKI issues one client certificate each, and the operator simulator
takes its operators (MCC-MNCs, market shares) from the same rows.

This module imports nothing but the standard library, so that
``operators_sim`` (a client of the published API only) may read it too;
docs/architecture.md lists it among the modules ``operators_sim`` may use.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BRIEF_ORGANISATIONS", "Organisation", "operators"]


@dataclass(frozen=True)
class Organisation:
    """One organisation of the brief.

    ``name`` is its name in the register (and its certificate's CN), ``kind``
    an ``OrgKind`` value, ``full_name`` its legal name (the certificate's O).
    Operators also have MCC-MNCs (an IMSI's first five digits, written
    ``510-10``), a market share (the fraction of subscribers the simulation
    gives them) and a short name that reports print; other kinds none.
    """

    name: str
    kind: str
    full_name: str
    mcc_mncs: tuple[str, ...] = ()
    market_share: float = 0.0
    display: str = ""


def _operator(
    name: str, full_name: str, display: str, mcc_mncs: tuple[str, ...], share: float
) -> Organisation:
    return Organisation(name, "operator", full_name, mcc_mncs, share, display)


BRIEF_ORGANISATIONS: tuple[Organisation, ...] = (
    _operator("telkomsel", "PT Telekomunikasi Selular", "Telkomsel", ("510-10",), 0.47),
    _operator("indosat", "PT Indosat Tbk", "Indosat Ooredoo", ("510-01", "510-21"), 0.17),
    _operator("xl", "PT XL Axiata Tbk", "XL Axiata", ("510-11",), 0.16),
    _operator("tri", "PT Hutchison 3 Indonesia", "Tri (Hutchison 3)", ("510-89",), 0.12),
    _operator("smartfren", "PT Smartfren Telecom Tbk", "Smartfren", ("510-09", "510-28"), 0.08),
    Organisation("kemenperin", "kemenperin", "Kementerian Perindustrian"),
    Organisation("bea-cukai", "customs", "Direktorat Jenderal Bea dan Cukai"),
    Organisation("kemlu", "kemlu", "Kementerian Luar Negeri"),
    Organisation("kominfo", "kominfo", "Kementerian Komunikasi dan Informatika"),
)
"""Operators first, then the regulators, in the order the organisations are
created and their certificates issued."""


def operators() -> tuple[Organisation, ...]:
    """The operators of the brief, in the table's order."""
    return tuple(org for org in BRIEF_ORGANISATIONS if org.kind == "operator")
