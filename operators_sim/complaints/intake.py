"""Who complains, about what, and with which documents.

A subscriber complains at most once per (device slot, SIM), with
probability ``share``, after an attach that was denied or that put the
device on the notification list (a greylisted, notified answer). What the
subscriber says (the category) and which documents they hold follow from
the device's ground truth, as a real subscriber knows their own phone:

==============================  ==================  =============================
device                          category            the desk can fix it by
==============================  ==================  =============================
grandfathered, second slot      SECOND_SLOT_DEAD    whitelisting the sibling slot
                                                    (box listing both IMEIs)
paired, second slot, own SIM    SECOND_SLOT_DEAD    pairing the slot with the SIM
stolen, with its owner's SIM    RECOVERED           unblocking (recovery note)
expired tourist                 NO_SIGNAL           re-registering (new visa)
black market, denied            NO_SIGNAL           nothing (rejected)
anything else                   OTHER               nothing, unless it works now
==============================  ==================  =============================

A grandfathered phone's dead second slot is the register's own doing: the
pre-cut-off dumps registered only the slot the network had seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ceir.v1 import complaints_pb2 as complaints_pb

from ..codec import imsi_text
from ..decision import ALLOWED, PENDING_OUTCOMES, Outcome, Source
from ..population import Category, Population
from .settings import ComplaintSettings

CATEGORY = complaints_pb.ComplaintCategory
_NOTIFIED = np.array([o in PENDING_OUTCOMES for o in sorted(Outcome)], dtype=np.bool_)


@dataclass
class Grievance:
    """One subscriber's complaint before and while the desks work it."""

    device: int
    slot: int
    sim: int
    operator: str  # the organisation of the network the attach went to: where they complain
    category: int  # ComplaintCategory
    imeis: tuple[str, ...]  # the dead slot first; a dual-SIM phone's sibling after it
    imsi: str
    msisdn: str
    arrival: float  # simulated hours
    documents: bool  # brings what the fix needs (box, recovery note, visa) at once
    replies: bool  # brings it when asked
    kind: str  # the device's ground-truth category, for the report
    register_caused: bool  # the register's own records are what is wrong
    denied: bool  # denied (else notified)

    @property
    def category_name(self) -> str:
        return CATEGORY.Name(self.category).removeprefix("COMPLAINT_CATEGORY_")  # type: ignore[arg-type]


class Intake:
    """Turns decisions into grievances, each subscriber at most once."""

    def __init__(
        self, population: Population, operators: tuple[str, ...], settings: ComplaintSettings
    ) -> None:
        self.population = population
        self.operators = operators
        self.settings = settings
        self.seen: set[tuple[int, int, int]] = set()
        self.candidates = 0

    def take(
        self,
        operator: np.ndarray,
        device: np.ndarray,
        slot: np.ndarray,
        sim: np.ndarray,
        outcome: np.ndarray,
        source: np.ndarray,
        hours: np.ndarray,
    ) -> list[Grievance]:
        """The grievances among these decisions (columns as the recorder keeps them)."""
        affected = (~ALLOWED[outcome] | _NOTIFIED[outcome]) & (source != Source.FORCED)
        out = []
        for row in np.flatnonzero(affected).tolist():
            key = (int(device[row]), int(slot[row]), int(sim[row]))
            if key in self.seen:
                continue
            self.seen.add(key)
            self.candidates += 1
            # one generator per subscriber: the same run seed gives the same choices
            rng = np.random.default_rng([self.settings.seed, *key])
            if rng.random() >= self.settings.share:
                continue
            out.append(
                self._grievance(
                    key,
                    self.operators[int(operator[row])],
                    float(hours[row]) + float(rng.exponential(self.settings.delay_hours)),
                    rng,
                    not bool(ALLOWED[int(outcome[row])]),
                )
            )
        return out

    def _grievance(
        self,
        key: tuple[int, int, int],
        operator: str,
        arrival: float,
        rng: np.random.Generator,
        denied: bool,
    ) -> Grievance:
        population, settings = self.population, self.settings
        device, slot, sim = key
        kind = Category(int(population.category[device]))
        own_sims = (int(population.sim[device]), int(population.second_sim[device]))
        category = CATEGORY.COMPLAINT_CATEGORY_OTHER
        register_caused = False
        if slot == 1 and kind is Category.GRANDFATHERED:
            category, register_caused = CATEGORY.COMPLAINT_CATEGORY_SECOND_SLOT_DEAD, True
        elif slot == 1 and kind is Category.PAIRED and sim in own_sims:
            category = CATEGORY.COMPLAINT_CATEGORY_SECOND_SLOT_DEAD
        elif kind is Category.STOLEN and sim in own_sims:
            category = CATEGORY.COMPLAINT_CATEGORY_RECOVERED
        elif kind is Category.STOLEN:
            category = CATEGORY.COMPLAINT_CATEGORY_WRONGLY_BLOCKED
        elif kind in (Category.TOURIST_EXPIRED, Category.MALFORMED) or denied:
            category = CATEGORY.COMPLAINT_CATEGORY_NO_SIGNAL
        imeis = [population.imei_text(device, slot)]
        if int(population.slots[device]) == 2 and kind is not Category.MALFORMED:
            imeis.append(population.imei_text(device, 1 - slot))
        documents = bool(rng.random() < settings.documents_share)
        if kind is Category.TOURIST_EXPIRED:
            documents = bool(rng.random() < settings.visa_share)
        return Grievance(
            device=device,
            slot=slot,
            sim=sim,
            operator=operator,
            category=category,
            imeis=tuple(imeis),
            imsi=imsi_text(int(population.sim_imsi[sim])),
            msisdn=str(int(population.sim_msisdn[sim])),
            arrival=arrival,
            documents=documents,
            replies=bool(rng.random() < settings.reply_share),
            kind=kind.name.lower(),
            register_caused=register_caused,
            denied=denied,
        )
