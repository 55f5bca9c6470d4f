"""The public IMEI lookup: registered or not, brand and model; nothing else.

The analogue of imei.kemenperin.go.id (and DIRBS's device verification,
India's Know Your Mobile). It is answered without credentials, so it says
only what the public may know: whether the IMEI is validly on the whitelist
now, and the brand and model of its registration. Never a subscriber, never
which list an IMEI is on or why (a stolen registered phone is just
"registered"), never a registration's source or reference.

Callers are limited per client address by a token bucket (``RateLimiter``):
``rate`` tokens a second up to ``burst``; each lookup takes one. The table
of addresses is bounded (``max_addresses``, least recently used first out):
a caller cycling through addresses costs memory up to that bound, and an
address pushed out starts again with a full bucket.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

from ceir.domain.errors import InvalidArgument
from ceir.domain.identifiers import describe_malformed_imei, format_imei_key, imei_key
from ceir.storage import repository as repo

from .clock import Clock, SystemClock
from .register import Register

DEFAULT_RATE = 5.0  # tokens (lookups) a second per client address
DEFAULT_BURST = 20  # lookups an address may make at once
DEFAULT_MAX_ADDRESSES = 100_000


@dataclass(frozen=True)
class LookupResult:
    """What the public may know of one IMEI."""

    imei_key: str
    registered: bool
    brand: str
    model: str


class LookupService:
    def __init__(self, register: Register) -> None:
        self.register = register

    def lookup(self, imei: str) -> LookupResult:
        """Whether ``imei`` is validly registered now, and its device's brand and model."""
        key = imei_key(imei)
        if not imei:
            raise InvalidArgument.field("imei", "an IMEI is required", reason="INVALID_IMEI")
        if key is None:
            raise InvalidArgument.field(
                "imei", describe_malformed_imei(imei[:40]), reason="INVALID_IMEI"
            )
        state = self.register.state
        registered = state.is_whitelisted(key)
        if registered:
            valid_until = state.valid_until_of(key)
            registered = valid_until is None or valid_until > self.register.clock.now_us()
        brand = model = ""
        if registered:
            with self.register.db.read() as connection:
                registration = repo.registration_of(connection, key)
            if registration is not None:
                brand, model = registration.brand, registration.model
        return LookupResult(format_imei_key(key), registered, brand, model)


class RateLimiter:
    """A token bucket per client address, in a bounded LRU table."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        *,
        clock: Clock | None = None,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
    ) -> None:
        if rate <= 0 or burst < 1 or max_addresses < 1:
            raise ValueError("the lookup rate must be > 0, the burst and table size >= 1")
        self.rate = rate
        self.burst = burst
        self.clock: Clock = clock or SystemClock()
        self.max_addresses = max_addresses
        # address -> (tokens, at microseconds); most recently used last.
        self._buckets: collections.OrderedDict[str, tuple[float, int]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, address: str) -> float:
        """Take one token for ``address``: 0.0 if it had one, else the seconds
        until it will have one (nothing is taken then)."""
        now = self.clock.now_us()
        with self._lock:
            tokens, at = self._buckets.pop(address, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0, now - at) / 1e6 * self.rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[address] = (tokens, now)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._buckets)
