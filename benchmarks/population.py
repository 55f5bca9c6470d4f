"""The devices and subscribers the register benchmarks use: deterministic,
so that every run checks the same IMEIs with the same IMSIs."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ceir.domain.identifiers import full_imei, luhn_check_digit
from ceir.v1 import equipment_check_pb2 as check_pb

# Type allocation codes of registered devices, and of devices that are not.
REGISTERED_TACS = (35209900, 35875505, 86123404, 35332510, 86769504)
UNREGISTERED_TAC = 86000001
ROAMING_TAC = 86000002
HOME_MNCS = ("10", "01", "11", "89", "09")  # Telkomsel, Indosat, XL, Tri, Smartfren
FOREIGN_MCC_MNCS = ("52501", "50212", "310260")  # Singtel, Maxis, T-Mobile US


def registered_keys(count: int) -> list[int]:
    """``count`` IMEI keys spread over a few TACs."""
    tacs = len(REGISTERED_TACS)
    return [REGISTERED_TACS[i % tacs] * 1_000_000 + i // tacs for i in range(count)]


def home_imsi(key: int) -> str:
    """The one Indonesian IMSI a key is always checked with (no clone alarm)."""
    return f"510{HOME_MNCS[key % len(HOME_MNCS)]}{key % 10**10:010d}"


def msisdn(key: int) -> str:
    return f"+628{key * 7_919 % 10**10:010d}"


def check(key: int) -> check_pb.CheckEquipmentRequest:
    """A network's check of a device on its usual SIM: 15-digit IMEI, IMSI, MSISDN."""
    imei, imsi = full_imei(key), home_imsi(key)
    return check_pb.CheckEquipmentRequest(imei=imei, imsi=imsi, msisdn=msisdn(key))


def first_sight(key: int) -> check_pb.CheckEquipmentRequest:
    """An unregistered device on a SIM of the benchmark's operator (510-10):
    the register notifies only the checking operator's own subscribers, so
    each of these writes a notification."""
    imsi = f"51010{key % 10**10:010d}"
    return check_pb.CheckEquipmentRequest(imei=full_imei(key), imsi=imsi, msisdn=msisdn(key))


def roamer_check(number: int) -> check_pb.CheckEquipmentRequest:
    key = ROAMING_TAC * 1_000_000 + number % 1_000_000
    foreign = FOREIGN_MCC_MNCS[number % len(FOREIGN_MCC_MNCS)]
    imsi = f"{foreign}{number:0{15 - len(foreign)}d}"[:15]
    return check_pb.CheckEquipmentRequest(imei=full_imei(key), imsi=imsi)


def malformed_check(number: int) -> check_pb.CheckEquipmentRequest:
    """A check whose IMEI breaks one rule: Luhn, length or digits."""
    digits = f"{REGISTERED_TACS[0]}{number % 1_000_000:06d}"
    wrong_luhn = digits + str((luhn_check_digit(digits) + 1) % 10)
    imei = (wrong_luhn, digits[:13], digits[:8] + "ABCDEF", digits + "123")[number % 4]
    return check_pb.CheckEquipmentRequest(imei=imei, imsi=home_imsi(number))


@dataclass(frozen=True)
class Mix:
    """Shares of each kind of check in a batch, in percent."""

    registered: int
    stolen: int
    roamer: int
    malformed: int
    unregistered: int = 0

    def describe(self) -> str:
        parts = [
            f"{self.registered}% registered",
            f"{self.stolen}% stolen",
            f"{self.roamer}% inbound roamers",
            f"{self.malformed}% malformed IMEIs",
        ]
        if self.unregistered:
            parts.append(f"{self.unregistered}% unregistered (first sight: notified)")
        return ", ".join(parts)


class Batches:
    """Batch requests drawn from the population, in a shuffled order."""

    def __init__(self, registered: Sequence[int], stolen: Sequence[int], seed: int = 2020) -> None:
        self.registered = registered
        self.stolen = stolen
        self.random = random.Random(seed)
        self._fresh = 0  # unregistered keys handed out so far

    def build(self, mix: Mix, size: int) -> check_pb.CheckEquipmentBatchRequest:
        assert sum((mix.registered, mix.stolen, mix.roamer, mix.malformed, mix.unregistered)) == 100
        pick = self.random
        stolen, roamers = size * mix.stolen // 100, size * mix.roamer // 100
        malformed, fresh = size * mix.malformed // 100, size * mix.unregistered // 100
        registered = size - stolen - roamers - malformed - fresh  # rounding goes here
        checks = [check(pick.choice(self.registered)) for _ in range(registered)]
        checks += [check(pick.choice(self.stolen)) for _ in range(stolen)]
        checks += [roamer_check(pick.randrange(10**9)) for _ in range(roamers)]
        checks += [malformed_check(pick.randrange(10**6)) for _ in range(malformed)]
        first = UNREGISTERED_TAC * 1_000_000 + self._fresh
        checks += [first_sight(key) for key in range(first, first + fresh)]
        self._fresh += fresh
        pick.shuffle(checks)
        return check_pb.CheckEquipmentBatchRequest(checks=checks)
