"""A simulated CEIR (Centralized Equipment Identity Register).

Layers, from the outside in: ``ceir.api`` (the asyncio gRPC server, the one
gate every call passes, thin servicers), ``ceir.service`` (domain services that own transactions),
``ceir.domain`` (identifiers, decision rules, permissions, errors: pure
Python, no protobuf) and ``ceir.storage`` (SQLAlchemy schema, migrations and
repositories).
"""

__version__ = "0.1.0"
