"""A population of devices and subscribers, deterministic from a seed.

Devices come from a catalogue of models (brand, model, one or two SIM slots,
plausible TACs); every slot has a Luhn-valid IMEI. Subscribers (SIMs) have an
IMSI and an MSISDN of an operator chosen by market share; inbound roamers
have foreign ones. Each device belongs to one category, in configurable
proportions, and the category is the ground truth a report checks against.

Everything is numpy columns (one row per device, per SIM), so a population
of millions costs memory in proportion, not Python objects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .codec import _IMSI_LENGTH_UNIT, luhn_check_digit
from .node import OPERATORS

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


class Category(enum.IntEnum):
    """What a device is, in the register's terms."""

    TPP = 0  # registered by Kemenperin (import or local production)
    CUSTOMS = 1  # a personal import registered by Bea Cukai
    TOURIST = 2  # registered at an operator outlet, still valid
    TOURIST_EXPIRED = 3  # registered as a tourist's, expired before traffic starts
    DIPLOMAT = 4  # registered by Kemlu
    GRANDFATHERED = 5  # active before the cut-off: only the first slot registered
    BLACK_MARKET = 6  # never registered
    STOLEN = 7  # registered, then reported stolen by its owner's operator
    CLONED = 8  # one registered IMEI used on several SIMs
    ROAMER = 9  # a visitor's device on a foreign SIM
    PAIRED = 10  # unregistered, but paired with its owner's IMSI (exception list)
    MALFORMED = 11  # a broken handset sending an IMEI that fails Luhn


DEFAULT_MIX: dict[Category, float] = {
    Category.TPP: 0.55,
    Category.CUSTOMS: 0.05,
    Category.TOURIST: 0.03,
    Category.TOURIST_EXPIRED: 0.01,
    Category.DIPLOMAT: 0.005,
    Category.GRANDFATHERED: 0.20,
    Category.BLACK_MARKET: 0.08,
    Category.STOLEN: 0.02,
    Category.CLONED: 0.01,
    Category.ROAMER: 0.03,
    Category.PAIRED: 0.01,
    Category.MALFORMED: 0.005,
}
REGISTERED_CATEGORIES = (
    Category.TPP,
    Category.CUSTOMS,
    Category.TOURIST,
    Category.DIPLOMAT,
    Category.GRANDFATHERED,
    Category.STOLEN,
    Category.CLONED,
)


@dataclass(frozen=True)
class Model:
    brand: str
    name: str
    slots: int
    tac: int


CATALOGUE = (
    Model("Samsung", "Galaxy A51", 2, 35328111),
    Model("Samsung", "Galaxy A11", 2, 35435211),
    Model("Samsung", "Galaxy S20", 1, 35162711),
    Model("Xiaomi", "Redmi Note 9", 2, 86244105),
    Model("Xiaomi", "Redmi 9A", 2, 86762904),
    Model("Xiaomi", "POCO X3 NFC", 2, 86398805),
    Model("OPPO", "A5s", 2, 86752104),
    Model("OPPO", "Reno4", 2, 86193605),
    Model("vivo", "Y12", 2, 86527104),
    Model("vivo", "Y20", 2, 86076205),
    Model("realme", "C3", 2, 86884004),
    Model("realme", "6 Pro", 2, 86690504),
    Model("Apple", "iPhone 11", 1, 35391811),
    Model("Apple", "iPhone SE (2020)", 1, 35669711),
    Model("Infinix", "Hot 9", 2, 35772611),
    Model("Advan", "G5 Elite", 2, 86937603),
    Model("Nokia", "105", 1, 35424811),
    Model("Huawei", "Y6p", 2, 86461905),
)
FOREIGN_MCC_MNCS = ("525-01", "502-12", "460-00", "310-26", "505-01", "440-10")
CLONE_SIMS = 5  # SIMs per cloned IMEI: more than the default clone threshold (3)
OPERATOR_MNCS: tuple[tuple[str, ...], ...] = tuple(
    tuple(code.split("-")[1] for code in op.mcc_mncs) for op in OPERATORS
)


@dataclass
class Population:
    """Devices and SIMs as columns; row i of each device column is device i."""

    seed: int
    category: npt.NDArray[np.uint8]  # per device
    model: npt.NDArray[np.uint8]
    slots: npt.NDArray[np.uint8]
    keys: U64  # per device, shape (devices, 2); slot 2 is 0 for one-slot devices
    imeis: npt.NDArray[np.bytes_]  # (devices, 2), as the device sends them
    sim: I32  # per device: its owner's SIM
    second_sim: I32  # per device: the SIM in slot 2 (-1: none)
    sim_imsi: U64  # per SIM: IMSI code
    sim_msisdn: U64
    sim_operator: npt.NDArray[np.int8]  # home operator index; -1 for a foreign SIM
    clone_sims: I32  # (cloned devices, CLONE_SIMS): SIMs sharing each cloned IMEI
    clone_of: I32  # per device: row in clone_sims, -1 if not cloned
    mix: dict[Category, float] = field(default_factory=dict)

    @property
    def devices(self) -> int:
        return int(self.category.shape[0])

    def of(self, category: Category) -> npt.NDArray[np.intp]:
        return np.flatnonzero(self.category == category)

    def counts(self) -> dict[str, int]:
        counted = np.bincount(self.category, minlength=len(Category))
        return {c.name.lower(): int(counted[c]) for c in Category}

    def registered_slots(self, device: int) -> list[int]:
        """The slots whose IMEIs the population registers (an expired
        tourist's too: registered, then expired)."""
        category = Category(int(self.category[device]))
        if category not in REGISTERED_CATEGORIES and category is not Category.TOURIST_EXPIRED:
            return []
        if category is Category.GRANDFATHERED:
            return [0]  # only the slot seen on the network before the cut-off
        return list(range(int(self.slots[device])))

    def imei_text(self, device: int, slot: int) -> str:
        return str(self.imeis[device, slot].decode())

    def full_imei(self, device: int, slot: int) -> str:
        """The 15-digit IMEI of a slot (key + Luhn)."""
        digits = f"{int(self.keys[device, slot]):014d}"
        return digits + str(luhn_check_digit(digits))


def generate(devices: int, seed: int, mix: dict[Category, float] | None = None) -> Population:
    """A population of ``devices`` devices; the same seed gives the same one."""
    mix = dict(mix or DEFAULT_MIX)
    total = sum(mix.values())
    if devices < 1 or total <= 0:
        raise ValueError("need at least one device and a positive mix")
    rng = np.random.default_rng(seed)
    weights = np.array([mix.get(c, 0.0) / total for c in Category])
    category = _assign(devices, weights, rng)

    model = rng.integers(0, len(CATALOGUE), size=devices).astype(np.uint8)
    slots = np.array([m.slots for m in CATALOGUE], dtype=np.uint8)[model]
    keys = _keys(model, slots, rng)
    imeis = _transmitted(keys, rng)
    malformed = np.flatnonzero(category == Category.MALFORMED)
    imeis[malformed, 0] = _bad_luhn(keys[malformed, 0])

    # SIMs: one per device, a second for about a third of dual-slot devices,
    # and extra SIMs for clones.
    foreign = category == Category.ROAMER
    has_second = (slots == 2) & (rng.random(devices) < 0.35) & ~foreign
    cloned = np.flatnonzero(category == Category.CLONED)
    extra = len(cloned) * (CLONE_SIMS - 1)
    sims = devices + int(has_second.sum()) + extra
    sim_foreign = np.zeros(sims, dtype=bool)
    sim_foreign[:devices] = foreign
    sim_operator, sim_imsi, sim_msisdn = _sims(sims, sim_foreign, rng)
    sim = np.arange(devices, dtype=np.int32)
    second_sim = np.full(devices, -1, dtype=np.int32)
    second_sim[has_second] = devices + np.arange(int(has_second.sum()), dtype=np.int32)
    first_extra = devices + int(has_second.sum())
    clone_sims = np.empty((len(cloned), CLONE_SIMS), dtype=np.int32)
    clone_of = np.full(devices, -1, dtype=np.int32)
    for row, device in enumerate(cloned.tolist()):
        start = first_extra + row * (CLONE_SIMS - 1)
        clone_sims[row] = [device, *range(start, start + CLONE_SIMS - 1)]
        clone_of[device] = row
    return Population(
        seed=seed,
        category=category,
        model=model,
        slots=slots,
        keys=keys,
        imeis=imeis,
        sim=sim,
        second_sim=second_sim,
        sim_imsi=sim_imsi,
        sim_msisdn=sim_msisdn,
        sim_operator=sim_operator,
        clone_sims=clone_sims,
        clone_of=clone_of,
        mix=mix,
    )


def _assign(
    devices: int, weights: npt.NDArray[np.float64], rng: np.random.Generator
) -> npt.NDArray[np.uint8]:
    """Exact proportions (largest remainders), shuffled: every category with
    a positive share gets at least one device when there is room."""
    raw = weights * devices
    counts = np.floor(raw).astype(np.int64)
    for index in np.argsort(raw - counts)[::-1][: devices - int(counts.sum())]:
        counts[index] += 1
    for index in np.flatnonzero((weights > 0) & (counts == 0)):
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[index] += 1
    category = np.repeat(np.arange(len(weights), dtype=np.uint8), counts)
    rng.shuffle(category)
    return category


def _keys(
    model: npt.NDArray[np.uint8], slots: npt.NDArray[np.uint8], rng: np.random.Generator
) -> U64:
    """Unique 14-digit keys: TAC of the model + a serial, slots consecutive."""
    devices = model.shape[0]
    keys = np.zeros((devices, 2), dtype=np.uint64)
    tacs = np.array([m.tac for m in CATALOGUE], dtype=np.uint64)
    for index in range(len(CATALOGUE)):
        rows = np.flatnonzero(model == index)
        # serials spread over the TAC's range, in a random order, two per device
        start = int(rng.integers(0, 400_000))
        serial = start + 2 * rng.permutation(rows.shape[0]).astype(np.uint64)
        tac = tacs[index] + serial // np.uint64(1_000_000)
        keys[rows, 0] = tac * np.uint64(1_000_000) + serial % np.uint64(1_000_000)
        two = slots[rows] == 2
        keys[rows[two], 1] = keys[rows[two], 0] + np.uint64(1)
    return keys


def _transmitted(keys: U64, rng: np.random.Generator) -> npt.NDArray[np.bytes_]:
    """IMEIs as networks send them: mostly 15 digits, some 14, some IMEISV."""
    devices = keys.shape[0]
    imeis = np.zeros((devices, 2), dtype="S16")
    # 0: 15 digits, 1: 14 digits, 2: an IMEISV
    form = np.asarray(np.searchsorted(np.array([0.8, 0.9]), rng.random(devices)), dtype=np.intp)
    for slot in range(2):
        present = keys[:, slot] != 0
        for row in np.flatnonzero(present).tolist():
            digits = f"{int(keys[row, slot]):014d}"
            if form[row] == 0:
                digits += str(luhn_check_digit(digits))
            elif form[row] == 2:
                digits += f"{row % 100:02d}"  # software version
            imeis[row, slot] = digits.encode()
    return imeis


def _bad_luhn(keys: U64) -> npt.NDArray[np.bytes_]:
    out = np.zeros(keys.shape[0], dtype="S16")
    for row, key in enumerate(keys.tolist()):
        digits = f"{key:014d}"
        out[row] = (digits + str((luhn_check_digit(digits) + 1) % 10)).encode()
    return out


def _sims(
    count: int, foreign: npt.NDArray[np.bool_], rng: np.random.Generator
) -> tuple[npt.NDArray[np.int8], U64, U64]:
    shares = np.array([op.share for op in OPERATORS])
    operator = rng.choice(len(OPERATORS), size=count, p=shares / shares.sum()).astype(np.int8)
    operator[foreign] = -1
    # distinct 9-digit subscriber numbers: an affine permutation of 0..10**9-1
    step = np.uint64(387_420_489)  # 3**18, coprime with 10**9
    offset = np.uint64(int(rng.integers(0, 10**9)))
    msin = (np.arange(count, dtype=np.uint64) * step + offset) % np.uint64(10**9)
    imsi = np.zeros(count, dtype=np.uint64)
    msisdn = np.zeros(count, dtype=np.uint64)
    for index, mncs in enumerate(OPERATOR_MNCS):
        rows = np.flatnonzero(operator == index)
        mnc = np.array([int(m) for m in mncs], dtype=np.uint64)[
            rng.integers(0, len(mncs), size=rows.shape[0])
        ]
        # 510 + MNC (2 digits) + MSIN (10 digits) = 15 digits
        imsi[rows] = (np.uint64(510) * np.uint64(100) + mnc) * np.uint64(10**10) + msin[rows]
        msisdn[rows] = np.uint64(628_1000_000_000) + msin[rows] % np.uint64(10**9)
    rows = np.flatnonzero(operator == -1)
    codes = [code.split("-") for code in FOREIGN_MCC_MNCS]
    pick = rng.integers(0, len(codes), size=rows.shape[0])
    for row, choice in zip(rows.tolist(), pick.tolist(), strict=True):
        mcc, mnc = codes[choice]
        imsi[row] = np.uint64(int(mcc + mnc) * 10**10 + int(msin[row]))
        msisdn[row] = np.uint64(65_8000_0000 + int(msin[row]) % 10**7)
    imsi = imsi + np.uint64(15 * _IMSI_LENGTH_UNIT)  # codes of 15-digit IMSIs
    return operator, imsi, msisdn
