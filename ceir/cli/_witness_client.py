"""Asking a witness to cosign: old size 0 first, then from the size it says it holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc

from ceir.v1 import custody_pb2, custody_pb2_grpc

from ._output import CliError, err
from ._writes import refusal

MAX_ATTEMPTS = 3  # the witness may cosign for someone else between two of ours


def witness_cosignature(
    address: str,
    ca_cert: Path | None,
    checkpoint: str,
    policies: list[str],
    proof_from: Callable[[int], list[bytes]],
    timeout: float,
) -> str:
    """The witness's cosignature line for ``checkpoint``, newline included.

    ``proof_from(size)`` is the register's consistency proof from ``size`` to
    the checkpoint's size. ``policies`` go along so the witness can walk to
    the key that signed the checkpoint.
    """
    if ca_cert is not None:
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca_cert.read_bytes()))
    else:
        channel = grpc.insecure_channel(address)
    old_size, proof = 0, list[bytes]()
    with channel:
        stub = custody_pb2_grpc.WitnessServiceStub(channel)
        for _ in range(MAX_ATTEMPTS):
            request = custody_pb2.AddCheckpointRequest(
                old_size=old_size, consistency_proof=proof, checkpoint=checkpoint, policies=policies
            )
            try:
                line = stub.AddCheckpoint(request, timeout=timeout).cosignature
            except grpc.RpcError as error:
                found = refusal(error)
                size = found.metadata.get("size", "")
                if found.reason != "WITNESS_CONFLICT" or not size.isdigit():
                    raise
                old_size = int(size)
                err().print(f"the witness holds size {old_size}; sending a proof from there")
                proof = proof_from(old_size)
                continue
            return line if line.endswith("\n") else line + "\n"
    raise CliError(f"the witness at {address} kept changing its size; try again")
