"""The register's tamper-evident change log: a pure library, no database, no protobuf.

Every list change is a leaf (``leaf``: its canonical bytes) of an RFC 6962
Merkle tree (``merkle``: hashing, frontier, proofs and their verification).
``docs/trust.md`` specifies the bytes and says what each check proves.
Errors are in ``errors``.
"""
