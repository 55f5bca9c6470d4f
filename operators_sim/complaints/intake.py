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
        self.seen: set[int] = set()  # subscribers (``_codes``) already judged
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
        affected = np.flatnonzero(
            (~ALLOWED[outcome] | _NOTIFIED[outcome]) & (source != Source.FORCED)
        )
        if affected.size == 0:
            return []
        codes = _codes(device[affected], slot[affected], sim[affected])
        codes, first = np.unique(codes, return_index=True)
        fresh = np.fromiter((c not in self.seen for c in codes.tolist()), bool, codes.size)
        codes, rows = codes[fresh], affected[first[fresh]]
        self.seen.update(codes.tolist())
        self.candidates += int(codes.size)
        # whether a subscriber complains: a hash of the run's seed and who they are,
        # so that a subscriber decides the same way whenever their attach comes in
        chosen = _uniform(codes, self.settings.seed) < self.settings.share
        out = []
        for row in rows[chosen].tolist():
            key = (int(device[row]), int(slot[row]), int(sim[row]))
            rng = np.random.default_rng([self.settings.seed, *key])
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


def _codes(device: np.ndarray, slot: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """One integer per (device, slot, SIM): SIMs and devices below 2**25 and 2**38."""
    return (
        (device.astype(np.uint64) << np.uint64(26))
        | (slot.astype(np.uint64) << np.uint64(25))
        | sim.astype(np.uint64)
    )


def _uniform(codes: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per code, from splitmix64 of the code and the seed."""
    z = codes ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)
