"""``ceir-sim attach --scenario insider``: an abused account, its alert and
the regulators' answer (docs/simulation.md, "The insider scenario").

In October 2022, 191,965 IMEIs were registered in ten days through one
ministry account. Here one organisation's credential (Kemlu's by default)
registers a burst of black-market phones a quarter of the way into the run,
as diplomats' devices, in one import. The register's account alert
(``OversightService.ListAccountAlerts``, read by Kominfo) must fire for that
organisation; halfway into the run Kemenperin lists what the account
registered in the burst's window (``ListRegistrationsBy``) and revokes the
whole set page by page (``RevokeRegistrationsBy``, one request id). The
report counts the burst, the revoked rows and what is left on the whitelist
(0), and the attaches of those phones before the burst, while registered,
and after the revocation (denied or notified again).

Every registration and revocation is recorded in the ground truth at the
sequence the register gave it (per IMEI, from the register's own rows), so
the attaches are judged against it like any other.

The alert rule counts registrations per clock hour against a baseline of
at least a floor: the population's own load falls in the same hour, so an
embedded register runs this scenario with a floor chosen between the
account's load and its burst (``alert_floor``), unless one is given.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from ceir.v1 import oversight_pb2 as oversight_pb
from ceir.v1 import oversight_pb2_grpc as oversight_grpc
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import types_pb2 as pb

from .decision import ALLOWED, PENDING_OUTCOMES
from .loader import KEMENPERIN, KEMLU, KOMINFO, Admin
from .population import CATALOGUE, Category, Population
from .truth import Event, Truth

if TYPE_CHECKING:
    from .simulation import Records

log = logging.getLogger("operators_sim.insider")
SOURCES = {
    KEMLU: pb.REGISTRATION_SOURCE_DIPLOMAT,
    "bea-cukai": pb.REGISTRATION_SOURCE_CUSTOMS,
    KEMENPERIN: pb.REGISTRATION_SOURCE_TPP_IMPORT,
}
PAGES = 4  # a burst is revoked in about this many pages (each one audited write)
POLL = 0.2
CALL_TIMEOUT = 60.0


@dataclass(frozen=True)
class InsiderSettings:
    """The abused account, its burst, and when each step happens (fractions
    of the run's duration)."""

    organisation: str = KEMLU
    share: float = 0.5  # of the black-market phones registered in the burst
    burst_at: float = 0.25
    revoke_at: float = 0.5
    alert_factor: float = 10.0  # the embedded register's --account-alert-factor
    alert_floor: float | None = None  # its --account-alert-floor (None: chosen, see above)
    seed: int = 1


@dataclass(frozen=True)
class AttachFigures:
    attaches: int
    allowed: int
    denied: int
    notified: int


@dataclass(frozen=True)
class InsiderSummary:
    """What the report shows of the scenario."""

    organisation: str
    devices: int
    burst_imeis: int  # registered in the burst (acknowledged by the register)
    burst_seconds: float  # into the run
    burst_sequences: tuple[int, int]  # first and last registration
    alert_raised: bool
    alert: dict[str, object]  # the alert as ListAccountAlerts gives it
    alert_seconds_after_burst: float | None
    listed: int  # ListRegistrationsBy over the burst's window
    revoked: int
    not_revoked: dict[str, int]  # other outcomes, by name
    revocation_pages: int
    revocation_sequence: int  # the register version after the last page
    remaining_on_whitelist: int  # listed again after the revocation
    attaches_before: AttachFigures
    attaches_registered: AttachFigures  # decided with the whole burst on the whitelist
    attaches_after: AttachFigures  # decided once the whole burst was revoked
    errors: tuple[str, ...] = ()
    ok: bool = False


@dataclass
class _State:
    burst_started: float = 0.0  # wall clock
    burst_ended: float = 0.0
    burst_seconds: float = 0.0
    imeis: int = 0
    first: int = 0
    last: int = 0
    alert: oversight_pb.AccountAlert | None = None
    alert_after: float | None = None
    listed: int = 0
    revoked: int = 0
    others: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    revocation_sequence: int = 0  # the register version after the last page
    first_revoked: int = 0  # the first WHITELIST_REMOVED change
    remaining: int = -1
    errors: list[str] = field(default_factory=list)


def pick_devices(population: Population, settings: InsiderSettings) -> list[int]:
    """The black-market phones of the burst (at least one)."""
    rng = np.random.default_rng(settings.seed + 11)
    pool = rng.permutation(population.of(Category.BLACK_MARKET)).tolist()
    return sorted(pool[: max(1, round(len(pool) * settings.share))]) if pool else []


def chosen_floor(population: Population, settings: InsiderSettings, devices: list[int]) -> float:
    """A floor under which the account's own load stays and its burst does
    not: halfway between them, over the factor."""
    if settings.alert_floor is not None:
        return settings.alert_floor
    loaded = _load_imeis(population, settings.organisation)
    burst = int(population.slots[devices].sum()) if devices else 0
    return max(1.0, (loaded + burst / 2) / settings.alert_factor)


def _load_imeis(population: Population, organisation: str) -> int:
    kinds = {KEMLU: (Category.DIPLOMAT,), "bea-cukai": (Category.CUSTOMS,)}.get(
        organisation, (Category.TPP, Category.STOLEN, Category.CLONED)
    )
    return sum(int(population.slots[population.of(k)].sum()) for k in kinds)


class InsiderRun:
    """The scenario's steps, in a thread of their own, while the traffic runs."""

    def __init__(
        self,
        admin: Admin,
        population: Population,
        truth: Truth,
        settings: InsiderSettings,
        duration: float,
    ) -> None:
        self.admin = admin
        self.population = population
        self.truth = truth
        self.settings = settings
        self.duration = duration
        self.devices = pick_devices(population, settings)
        self.keys = {
            f"{int(population.keys[d, s]):014d}": (d, s)
            for d in self.devices
            for s in range(int(population.slots[d]))
        }
        self.state = _State()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def start(self, started: float) -> None:
        self._started = started
        self._thread = threading.Thread(target=self._run, name="insider", daemon=True)
        self._thread.start()

    def _at(self, fraction: float) -> None:
        """Wait until ``fraction`` of the run's duration has passed."""
        left = self._started + fraction * self.duration - time.perf_counter()
        if left > 0:
            time.sleep(left)

    def _run(self) -> None:
        state = self.state
        try:
            self._at(self.settings.burst_at)
            self._burst()
            deadline = self._started + self.settings.revoke_at * self.duration
            while state.alert is None:
                state.alert = self._alert()
                if state.alert is None and time.perf_counter() >= deadline + 30:
                    break
                if state.alert is None:
                    time.sleep(POLL)
            if state.alert is not None:
                state.alert_after = round(time.time() - state.burst_ended, 2)
            self._at(self.settings.revoke_at)
            self._revoke()
            state.remaining = sum(r.on_whitelist for r in self._registrations())
        except grpc.RpcError as error:
            log.exception("the insider scenario failed")
            state.errors.append(f"{error.code().name}: {error.details()}"[:300])

    # -- the steps ---------------------------------------------------------------

    def _burst(self) -> None:
        """The account registers every phone of the burst in one import."""
        state, population, org = self.state, self.population, self.settings.organisation
        rows = []
        for device in self.devices:
            model = CATALOGUE[int(population.model[device])]
            registration = registry_pb.DeviceRegistration(
                imeis=[
                    population.full_imei(device, s) for s in range(int(population.slots[device]))
                ],
                source=SOURCES.get(org, pb.REGISTRATION_SOURCE_DIPLOMAT),
                reference=f"INSIDER-{device}",
                brand=model.brand,
                model=model.name,
            )
            rows.append(registry_pb.ImportRow(row=device, device=registration))
        state.burst_started = time.time()
        state.burst_seconds = round(time.perf_counter() - self._started, 2)
        answer = self.admin.import_rows(org, rows, "insider-burst")
        state.burst_ended = time.time()
        state.imeis = int(answer.rows_accepted and sum(len(r.device.imeis) for r in rows))
        registrations = self._registrations()
        for row in registrations:
            device, slot = self.keys.get(row.imei_key, (-1, -1))
            if device >= 0:
                self.truth.record(device, Event.REGISTERED, int(row.sequence), slot)
        sequences = [int(r.sequence) for r in registrations] or [0]
        state.first, state.last = min(sequences), max(sequences)
        state.imeis = len(registrations)

    def _oversight(self, org: str) -> oversight_grpc.OversightServiceStub:
        return oversight_grpc.OversightServiceStub(self.admin.channel_for(org))

    def _window(self) -> tuple[Timestamp, Timestamp]:
        start, end = Timestamp(), Timestamp()
        start.FromMicroseconds(int(self.state.burst_started * 1e6) - 200_000)
        end.FromMicroseconds(int(self.state.burst_ended * 1e6) + 1_000_000)
        return start, end

    def _alert(self) -> oversight_pb.AccountAlert | None:
        """The account's alert raised by the burst, if the register raised one."""
        answer = self._oversight(KOMINFO).ListAccountAlerts(
            oversight_pb.ListAccountAlertsRequest(page_size=1000),
            metadata=self.admin.metadata(KOMINFO),
            timeout=CALL_TIMEOUT,
        )
        for alert in answer.alerts:
            if (
                alert.organisation == self.settings.organisation
                and int(alert.sequence) >= self.state.first
            ):
                return alert
        return None

    def _registrations(self) -> list[oversight_pb.AccountRegistration]:
        """What the account registered in the burst's window, as Kemenperin lists it."""
        start, end = self._window()
        rows: list[oversight_pb.AccountRegistration] = []
        token = ""
        while True:
            page = self._oversight(KEMENPERIN).ListRegistrationsBy(
                oversight_pb.ListRegistrationsByRequest(
                    organisation=self.settings.organisation,
                    start_time=start,
                    end_time=end,
                    page_size=10_000,
                    page_token=token,
                ),
                metadata=self.admin.metadata(KEMENPERIN),
                timeout=CALL_TIMEOUT,
            )
            rows.extend(page.registrations)
            token = page.next_page_token
            if not token:
                return rows

    def _revoke(self) -> None:
        """Kemenperin revokes the window's set, page by page, under one request id."""
        state = self.state
        state.listed = len(self._registrations())
        start, end = self._window()
        request_id = f"sim-{self.admin.run_id}-insider-revocation"
        token = ""
        while True:
            page = self._oversight(KEMENPERIN).RevokeRegistrationsBy(
                oversight_pb.RevokeRegistrationsByRequest(
                    request_id=request_id,
                    organisation=self.settings.organisation,
                    start_time=start,
                    end_time=end,
                    reason="insider abuse: burst of registrations through one account",
                    page_size=max(1, -(-state.listed // PAGES)),
                    page_token=token,
                ),
                metadata=self.admin.metadata(KEMENPERIN),
                timeout=CALL_TIMEOUT,
            )
            state.pages += 1
            state.revocation_sequence = int(page.sequence)
            for row in page.rows:
                if row.outcome == oversight_pb.REVOCATION_OUTCOME_REVOKED:
                    state.revoked += 1
                    removed = int(row.revocation_sequence)
                    state.first_revoked = min(state.first_revoked or removed, removed)
                    device, slot = self._device_of(row.imei_key)
                    if device >= 0:
                        self.truth.record(device, Event.REVOKED, removed, slot)
                else:
                    name = oversight_pb.RevocationOutcome.Name(row.outcome)
                    name = name.removeprefix("REVOCATION_OUTCOME_")
                    state.others[name] = state.others.get(name, 0) + 1
            token = page.next_page_token
            if not token:
                return

    def _device_of(self, imei_key: str) -> tuple[int, int]:
        """The population's (device, slot) of an IMEI key, (-1, -1) if none: a
        window can hold another registration of the same account (Kemenperin's
        late registrations), revoked with the burst and so in the ground truth too."""
        found = self.keys.get(imei_key)
        if found is not None:
            return found
        rows, slots = np.nonzero(self.population.keys == np.uint64(int(imei_key)))
        return (int(rows[0]), int(slots[0])) if rows.size else (-1, -1)

    # -- the end -----------------------------------------------------------------

    def finish(self, records: Records) -> InsiderSummary:
        """Wait for the steps to end; the figures, with the attaches of the
        burst's phones (``records``: the run's ``Records``) before, during and after."""
        if self._thread is not None:
            self._thread.join()
        state = self.state
        mine = np.isin(records.device, np.array(self.devices, dtype=np.int64))
        sequence = records.sequence.astype(np.int64)
        outcome = records.outcome
        never = np.iinfo(np.int64).max
        before = mine & (sequence < state.first)
        # decided with the whole burst registered and nothing revoked yet
        registered = mine & (sequence >= state.last) & (sequence < (state.first_revoked or never))
        after = mine & (sequence >= (state.revocation_sequence or never))
        alert = state.alert
        ok = (
            not state.errors
            and alert is not None
            and state.imeis > 0
            and state.revoked == state.listed >= state.imeis
            and state.remaining == 0
        )
        return InsiderSummary(
            organisation=self.settings.organisation,
            devices=len(self.devices),
            burst_imeis=state.imeis,
            burst_seconds=state.burst_seconds,
            burst_sequences=(state.first, state.last),
            alert_raised=alert is not None,
            alert=_alert_dict(alert),
            alert_seconds_after_burst=state.alert_after,
            listed=state.listed,
            revoked=state.revoked,
            not_revoked=dict(sorted(state.others.items())),
            revocation_pages=state.pages,
            revocation_sequence=state.revocation_sequence,
            remaining_on_whitelist=state.remaining,
            attaches_before=_figures(outcome[before]),
            attaches_registered=_figures(outcome[registered]),
            attaches_after=_figures(outcome[after]),
            errors=tuple(state.errors),
            ok=ok,
        )


def _figures(outcome: np.ndarray) -> AttachFigures:
    allowed = ALLOWED[outcome]
    notified = np.isin(outcome, np.array([int(o) for o in PENDING_OUTCOMES]))
    return AttachFigures(
        attaches=int(outcome.shape[0]),
        allowed=int(allowed.sum()),
        denied=int((~allowed).sum()),
        notified=int(notified.sum()),
    )


def _alert_dict(alert: oversight_pb.AccountAlert | None) -> dict[str, object]:
    if alert is None:
        return {}
    return {
        "alert_id": int(alert.alert_id),
        "organisation": alert.organisation,
        "registrations_at_alert": int(alert.registrations_at_alert),
        "registrations": int(alert.registrations),
        "baseline": round(alert.baseline, 2),
        "threshold": round(alert.threshold, 2),
        "factor": alert.factor,
        "raise_time": alert.raise_time.ToJsonString(),
        "sequence": int(alert.sequence),
    }
