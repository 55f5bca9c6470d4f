"""Who may do what: the brief's table of organisations, in one place.

The API documentation reproduces ``ACTION_KINDS``; a test walks it. Below
it: what each may do to an existing entry, and whose subscribers' IMSIs and
MSISDNs each may read.
"""

from __future__ import annotations

import dataclasses
import enum

from .errors import PermissionDenied
from .identifiers import home_mcc_mnc
from .model import BlacklistEntry, Caller, Change, OrgKind, Registration, RegistrationSource

_ALL = frozenset(OrgKind)
_OP = OrgKind.OPERATOR


class Action(enum.StrEnum):
    CHECK = "check equipment"
    REGISTER = "register devices"
    REVOKE = "revoke registrations"
    REPORT_STOLEN = "report stolen devices"
    REPORT_RECOVERED = "report recovered devices"
    MANAGE_EXCEPTIONS = "pair IMEIs with IMSIs"
    LIST_NOTIFICATIONS = "list notifications"
    READ_RECORD = "read IMEI records"
    SYNC_LISTS = "receive lists"
    READ_POLICY = "read the policy"
    UPDATE_POLICY = "change the policy"
    READ_LOG = "read the transparency log"
    CUSTODY = "take part in the custody ceremony"
    FIND_RANGES = "find range uploads"
    OVERSEE_ACCOUNTS = "read account alerts and an organisation's registrations"
    REVOKE_ACCOUNT = "revoke an organisation's registrations in bulk"
    # The complaints desk (ceir.service.complaints).
    FILE_COMPLAINTS = "file complaints"
    READ_COMPLAINTS = "read complaints"
    WORK_COMPLAINTS = "work complaints"


ACTION_KINDS: dict[Action, frozenset[OrgKind]] = {
    # Network checks come from operators; Kemenperin (public lookup, complaint
    # desk later) and the regulator may check too. Customs and Kemlu register,
    # they do not query the network's register.
    Action.CHECK: frozenset({_OP, OrgKind.KEMENPERIN, OrgKind.KOMINFO}),
    # Narrowed per registration source by SOURCE_KINDS.
    Action.REGISTER: frozenset({_OP, OrgKind.KEMENPERIN, OrgKind.CUSTOMS, OrgKind.KEMLU}),
    Action.REVOKE: frozenset({_OP, OrgKind.KEMENPERIN, OrgKind.CUSTOMS, OrgKind.KEMLU}),
    # An operator reports for its own subscribers (require_own_imsi); Kominfo,
    # for the police, for any subscriber.
    Action.REPORT_STOLEN: frozenset({_OP, OrgKind.KOMINFO}),
    # Narrowed per report by require_may_recover: Kemenperin's complaint and
    # case process lifts any report.
    Action.REPORT_RECOVERED: frozenset({_OP, OrgKind.KEMENPERIN, OrgKind.KOMINFO}),
    Action.MANAGE_EXCEPTIONS: frozenset({_OP, OrgKind.KEMENPERIN}),
    Action.LIST_NOTIFICATIONS: frozenset({_OP, OrgKind.KEMENPERIN, OrgKind.KOMINFO}),
    Action.READ_RECORD: frozenset({_OP, OrgKind.KEMENPERIN, OrgKind.KOMINFO}),
    Action.SYNC_LISTS: frozenset({_OP, OrgKind.KEMENPERIN, OrgKind.KOMINFO}),
    Action.READ_POLICY: _ALL,
    Action.UPDATE_POLICY: frozenset({OrgKind.KOMINFO}),
    # Whoever receives the lists may check them against the signed log.
    Action.READ_LOG: frozenset({_OP, OrgKind.KEMENPERIN, OrgKind.KOMINFO}),
    # Every organisation reads the ceremony and may carry signatures made
    # off the server (they verify or are refused); who may take each step
    # (propose, freeze, report readiness, ...) is narrowed by the custody
    # service (ceir/service/custody_rules.py).
    Action.CUSTODY: _ALL,
    # The regulators' cure for a register filled by range uploads
    # (ceir.service.range_finder).
    Action.FIND_RANGES: frozenset({OrgKind.KEMENPERIN, OrgKind.KOMINFO}),
    # An abused account (ceir.service.oversight): the regulators read the
    # alerts and what an organisation registered; Kemenperin, which revokes
    # any registration (revokes_any), revokes the set.
    Action.OVERSEE_ACCOUNTS: frozenset({OrgKind.KEMENPERIN, OrgKind.KOMINFO}),
    Action.REVOKE_ACCOUNT: frozenset({OrgKind.KEMENPERIN}),
    # The complaints desk: a desk (an operator's, Kemenperin's) files for a
    # subscriber and works what it owns; Kominfo reads every complaint.
    Action.FILE_COMPLAINTS: frozenset({_OP, OrgKind.KEMENPERIN}),
    Action.READ_COMPLAINTS: frozenset({_OP, OrgKind.KEMENPERIN, OrgKind.KOMINFO}),
    Action.WORK_COMPLAINTS: frozenset({_OP, OrgKind.KEMENPERIN}),
}

# Which kind of organisation may register (and revoke) devices of each source.
SOURCE_KINDS: dict[RegistrationSource, OrgKind] = {
    RegistrationSource.TPP_IMPORT: OrgKind.KEMENPERIN,
    RegistrationSource.TPP_PRODUCTION: OrgKind.KEMENPERIN,
    RegistrationSource.CUSTOMS: OrgKind.CUSTOMS,
    RegistrationSource.TOURIST: OrgKind.OPERATOR,
    RegistrationSource.DIPLOMAT: OrgKind.KEMLU,
    RegistrationSource.GRANDFATHERED: OrgKind.OPERATOR,
}


def require(caller: Caller, action: Action) -> None:
    """Raise PermissionDenied unless the caller's kind may do the action."""
    if caller.kind not in ACTION_KINDS[action]:
        raise PermissionDenied(
            f"{caller.name} ({caller.kind.value}) may not {action.value}",
            reason="ACTION_NOT_ALLOWED",
        )


def require_source(caller: Caller, source: RegistrationSource) -> None:
    """Raise PermissionDenied unless the caller may register this source."""
    allowed = SOURCE_KINDS[source]
    if caller.kind is not allowed:
        raise PermissionDenied(
            f"{caller.name} ({caller.kind.value}) may not register {source.name} devices; "
            f"only {allowed.value} may",
            reason="SOURCE_NOT_ALLOWED",
        )


def revokes_any(caller: Caller) -> bool:
    """Kemenperin revokes any registration (no record needs reading first)."""
    return caller.kind is OrgKind.KEMENPERIN


def require_may_revoke(caller: Caller, key: int, registration: Registration) -> None:
    """Kemenperin revokes any registration; the others only registrations of
    the sources they may register, and an operator only those it made."""
    if revokes_any(caller):
        return
    require_source(caller, registration.source)
    if caller.kind is OrgKind.OPERATOR and registration.registered_by != caller.name:
        raise PermissionDenied(
            f"IMEI {key:014d} was registered by {registration.registered_by}, not {caller.name}",
            reason="NOT_REGISTRANT",
        )


def require_may_recover(caller: Caller, key: int, entry: BlacklistEntry) -> None:
    """Who may lift a stolen report: the organisation that filed it, the
    operator of the subscriber it names (whoever filed it), and Kemenperin.

    A report stored before subscriber IMSIs were (migration 0003) names no
    subscriber: only its reporter and Kemenperin may lift it.
    """
    if caller.kind is OrgKind.KEMENPERIN or caller.name == entry.blocked_by:
        return
    subscriber = entry.subscriber_imsi
    if subscriber and caller.kind is OrgKind.OPERATOR and caller.owns_imsi(subscriber):
        return
    if subscriber:
        who = f"{entry.blocked_by}, the subscriber's operator ({home_mcc_mnc(subscriber)})"
    else:  # filed before subscribers were stored
        who = f"{entry.blocked_by} (the report names no subscriber)"
    raise PermissionDenied(
        f"IMEI {key:014d} was reported stolen by {entry.blocked_by}; only {who} "
        "or kemenperin may report it recovered",
        reason="NOT_REPORTER",
    )


def require_own_imsi(caller: Caller, imsi: str, field: str) -> None:
    """An operator acts only for its own subscribers."""
    if caller.kind is OrgKind.OPERATOR and not caller.owns_imsi(imsi):
        raise PermissionDenied(
            f"{field}: IMSI {imsi} does not belong to {caller.name} "
            f"({', '.join(caller.mcc_mncs) or 'no MCC-MNC'})",
            reason="FOREIGN_SUBSCRIBER",
        )


def may_notify(caller: Caller, imsi: str) -> bool:
    """Whether a check by this caller may put (IMEI, IMSI) on the notification list.

    A notification is the subscriber's network telling its subscriber to
    register the phone before the block date, so only the operator that owns
    the IMSI records one; another operator's check of that IMSI, a check
    without an IMSI, and the regulators' checks are answered alike but leave
    no notification (they would start another operator's block clock and fill
    its SMS queue). A block for a grace that has run out is no one's message
    but a fact about the IMEI, so any check may record that.
    """
    return caller.kind is OrgKind.OPERATOR and bool(imsi) and caller.owns_imsi(imsi)


# --- whose subscribers a caller reads -------------------------------------------------

# Regulators read every subscriber's IMSI and MSISDN in records and
# notification lists; an operator only its own subscribers'.
SEES_EVERY_SUBSCRIBER = frozenset({OrgKind.KEMENPERIN, OrgKind.KOMINFO})


def visible_imsi_prefixes(caller: Caller) -> tuple[str, ...] | None:
    """How the IMSIs start whose subscribers the caller may read; None for all."""
    if caller.kind in SEES_EVERY_SUBSCRIBER:
        return None
    return caller.imsi_prefixes if caller.kind is OrgKind.OPERATOR else ()


def sees_subscriber(caller: Caller, imsi: str) -> bool:
    """True if the caller may read this subscriber's IMSI and MSISDN (an
    empty IMSI belongs to no operator: regulators only)."""
    prefixes = visible_imsi_prefixes(caller)
    return prefixes is None or imsi.startswith(prefixes)


def change_as_seen(caller: Caller, change: Change) -> Change:
    """The change with the IMSI, MSISDN and salt blanked unless the caller may
    read them (the salt too: with it, the IMSIs of one MCC-MNC could be tried
    against the commitment one by one)."""
    if (change.imsi or change.msisdn) and not sees_subscriber(caller, change.imsi):
        return dataclasses.replace(change, imsi="", msisdn="", subscriber_salt=b"")
    return change


def blacklist_as_seen(caller: Caller, entry: BlacklistEntry) -> BlacklistEntry:
    """The entry with the stolen report's subscriber blanked unless the caller may read it."""
    if entry.subscriber_imsi and not sees_subscriber(caller, entry.subscriber_imsi):
        return dataclasses.replace(entry, subscriber_imsi="")
    return entry
