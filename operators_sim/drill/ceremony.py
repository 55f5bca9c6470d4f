"""The handover ceremony, step by step, through the public CustodyService API.

The drill plays every person: Telkomsel's and Kemenperin's officers sign
documents with keys only the drill holds and submit the signature lines
(each from its own organisation's connection); Kominfo's staff sign with the
witness's note key; the witness process cosigns checkpoints on request.
No server ever sees an officer's private key.

Every step is marked on the timeline, and a refusal is kept as it came
(its ErrorInfo reason), so that the scenario can judge it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.duration_pb2 import Duration

from ceir.audit.note import Signer, sign_note
from ceir.custody import CustodyPolicy, split_note
from ceir.v1 import custody_pb2 as custody_pb
from ceir.v1 import custody_pb2_grpc as custody_grpc
from ceir.v1 import transparency_pb2 as log_pb
from ceir.v1 import transparency_pb2_grpc as log_grpc

from .errors import Refusal, refusal
from .timeline import Timeline

__all__ = ["Ceremony", "CeremonyRefused", "Side"]

STATES = custody_pb.CustodyState
POLL = 0.1  # seconds between GetCustody calls while waiting for a state
# Each step waits for its register to be reachable (wait_for_ready): a TLS
# handshake cut short on a loaded machine is retried, not a refusal.
CALL_TIMEOUT = 10.0


class CeremonyRefused(Exception):
    """A register or the witness refused a step."""

    def __init__(self, step: str, refused: Refusal) -> None:
        super().__init__(f"{step}: {refused.reason}: {refused.message}")
        self.step = step
        self.refusal = refused


@dataclass
class Side:
    """One register, reached by each organisation over its own channel."""

    name: str
    channels: dict[str, grpc.Channel]  # organisation -> channel with its certificate

    def custody(self, organisation: str) -> custody_grpc.CustodyServiceStub:
        return custody_grpc.CustodyServiceStub(self.channels[organisation])

    def transparency(self, organisation: str) -> log_grpc.TransparencyServiceStub:
        return log_grpc.TransparencyServiceStub(self.channels[organisation])

    def state(self, organisation: str = "kominfo") -> custody_pb.Custody:
        response = self.custody(organisation).GetCustody(
            custody_pb.GetCustodyRequest(), timeout=CALL_TIMEOUT, wait_for_ready=True
        )
        return response.custody


def note_text(signed: str) -> str:
    """The text of a signed note (the document officers sign), or the text
    itself before anyone signed it."""
    if "\n\n" not in signed:
        return signed
    return split_note(signed)[0]


def with_lines(signed: str, lines: Sequence[str]) -> str:
    """``signed`` with more signature lines (each ending in a newline)."""
    return signed + "".join(line if line.endswith("\n") else line + "\n" for line in lines)


class Ceremony:
    """Runs the steps against the outgoing and incoming registers and the witness."""

    def __init__(
        self,
        outgoing: Side,
        incoming: Side,
        witness: Callable[[], grpc.Channel],
        timeline: Timeline,
        outgoing_org: str,
        incoming_org: str,
    ) -> None:
        self.outgoing = outgoing
        self.incoming = incoming
        self.witness = witness
        self.timeline = timeline
        self.outgoing_org = outgoing_org
        self.incoming_org = incoming_org
        self.final_size = 0
        self.final_checkpoint = ""
        self.first_checkpoint = ""
        self.handover = ""
        self.proof: list[bytes] = []

    # -- helpers ---------------------------------------------------------

    def _call(self, step: str, function: Callable[[], object]) -> object:
        try:
            return function()
        except grpc.RpcError as error:
            refused = refusal(error)
            if not refused.down:  # a server away is the scenario's to mark, not a refusal
                self.timeline.mark("refused", f"{step}: {refused.reason}")
            raise CeremonyRefused(step, refused) from None

    def wait_state(
        self, side: Side, states: Sequence[int], timeout: float
    ) -> custody_pb.Custody | None:
        """Poll ``side`` until its state is one of ``states``; None at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                custody = side.state()
                if custody.state in states:
                    return custody
            except grpc.RpcError:
                pass  # a register restarting: ask again
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL)

    # -- the steps ---------------------------------------------------------

    def propose(self, policy: CustodyPolicy, notice: float) -> None:
        seconds = int(notice)
        self._call(
            "propose",
            lambda: self.outgoing.custody(self.outgoing_org).ProposePolicy(
                custody_pb.ProposePolicyRequest(
                    policy=policy.text(),
                    notice=Duration(seconds=seconds, nanos=int((notice - seconds) * 1e9)),
                ),
                timeout=CALL_TIMEOUT,
                wait_for_ready=True,
            ),
        )
        self.timeline.mark("proposed", f"policy {policy.version}")

    def pending(self, side: Side) -> str:
        """The pending document's text (what officers sign now)."""
        custody = side.state()
        if not custody.pending_document:
            raise CeremonyRefused(
                "document", Refusal(grpc.StatusCode.FAILED_PRECONDITION, "NO_DOCUMENT")
            )
        return note_text(custody.pending_document)

    def sign(self, side: Side, organisation: str, signers: Sequence[Signer], what: str) -> None:
        """``signers`` (people of ``organisation``) sign the pending document
        and submit their lines from ``organisation``'s connection."""
        text = self.pending(side)
        signed = sign_note(text, signers)
        self._call(
            f"sign {what}",
            lambda: side.custody(organisation).SubmitSignature(
                custody_pb.SubmitSignatureRequest(signed_note=signed),
                timeout=CALL_TIMEOUT,
                wait_for_ready=True,
            ),
        )
        names = ", ".join(s.name.rsplit("/", 1)[-1] for s in signers)
        self.timeline.mark(f"signed {what}", f"{organisation}: {names}")

    def submit(self, side: Side, organisation: str, signed: str, what: str) -> None:
        """Submit a note signed elsewhere (as the drill's faults forge them)."""
        self._call(
            f"sign {what}",
            lambda: side.custody(organisation).SubmitSignature(
                custody_pb.SubmitSignatureRequest(signed_note=signed),
                timeout=CALL_TIMEOUT,
                wait_for_ready=True,
            ),
        )
        self.timeline.mark("submitted", f"{organisation}: signed {what}")

    def freeze(self, timeout: float) -> None:
        """Freeze as soon as the register lets it (the notice period may still run)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = self.outgoing.custody(self.outgoing_org).Freeze(
                    custody_pb.FreezeRequest(), timeout=CALL_TIMEOUT, wait_for_ready=True
                )
                break
            except grpc.RpcError as error:
                refused = refusal(error)
                if refused.reason != "NOTICE_PERIOD" or time.monotonic() >= deadline:
                    self.timeline.mark("refused", f"freeze: {refused.reason}")
                    raise CeremonyRefused("freeze", refused) from None
                time.sleep(min(refused.retry_after or 0.5, 0.5))
        custody = response.custody
        self.final_size = int(custody.final_size)
        self.final_checkpoint = custody.final_checkpoint
        self.timeline.mark("FROZEN", f"final size {self.final_size:,}")

    def cosign(
        self,
        side: Side,
        checkpoint: str,
        old_size: int,
        proof: Sequence[bytes],
        policies: Sequence[str],
        what: str,
    ) -> str:
        """The witness cosigns ``checkpoint``; the line goes to ``side``. Returns
        the checkpoint with its cosignature."""
        witness = custody_grpc.WitnessServiceStub(self.witness())
        response = self._call(
            f"cosign {what}",
            lambda: witness.AddCheckpoint(
                custody_pb.AddCheckpointRequest(
                    old_size=old_size,
                    consistency_proof=list(proof),
                    checkpoint=checkpoint,
                    policies=list(policies),
                ),
                timeout=CALL_TIMEOUT,
                wait_for_ready=True,
            ),
        )
        assert isinstance(response, custody_pb.AddCheckpointResponse)
        cosigned = with_lines(checkpoint, [response.cosignature])
        self._call(
            f"submit cosignature {what}",
            lambda: side.custody("kominfo").SubmitCosignature(
                custody_pb.SubmitCosignatureRequest(checkpoint=cosigned),
                timeout=CALL_TIMEOUT,
                wait_for_ready=True,
            ),
        )
        self.timeline.mark(f"cosigned {what}")
        return cosigned

    def transfer(self, timeout: float) -> custody_pb.Custody:
        response = self._call(
            "transfer",
            lambda: self.incoming.custody(self.incoming_org).Transfer(
                custody_pb.TransferRequest(), timeout=timeout, wait_for_ready=True
            ),
        )
        assert isinstance(response, custody_pb.TransferResponse)
        self.timeline.mark("TRANSFERRED", f"{response.custody.transferred_size:,} changes")
        return response.custody

    def activate(self, handover: str) -> custody_pb.Custody:
        response = self._call(
            "activate",
            lambda: self.incoming.custody(self.incoming_org).Activate(
                custody_pb.ActivateRequest(handover=handover),
                timeout=CALL_TIMEOUT,
                wait_for_ready=True,
            ),
        )
        assert isinstance(response, custody_pb.ActivateResponse)
        # the note as the incoming register completed it: with the new key's signature
        self.handover = response.custody.handover or handover
        self.first_checkpoint = response.custody.first_checkpoint
        self.timeline.mark("ACTIVE", "first checkpoint signed by the new key")
        return response.custody

    def consistency(self, side: Side, first: int, second: int) -> list[bytes]:
        response = self._call(
            "consistency proof",
            lambda: side.transparency("kominfo").GetConsistencyProof(
                log_pb.GetConsistencyProofRequest(first_size=first, second_size=second),
                timeout=CALL_TIMEOUT,
                wait_for_ready=True,
            ),
        )
        assert isinstance(response, log_pb.GetConsistencyProofResponse)
        return list(response.hashes)

    def retire(self, handover: str, first_checkpoint: str, proof: Sequence[bytes]) -> None:
        self._call(
            "retire",
            lambda: self.outgoing.custody(self.outgoing_org).Retire(
                custody_pb.RetireRequest(
                    handover=handover,
                    first_checkpoint=first_checkpoint,
                    consistency_proof=list(proof),
                ),
                timeout=CALL_TIMEOUT,
                wait_for_ready=True,
            ),
        )
        self.timeline.mark("RETIRED", "the outgoing register is read-only")

    def abort(self, signed_abort: str) -> None:
        self._call(
            "abort",
            lambda: self.outgoing.custody(self.outgoing_org).Abort(
                custody_pb.AbortRequest(abort_note=signed_abort),
                timeout=CALL_TIMEOUT,
                wait_for_ready=True,
            ),
        )
        self.timeline.mark("ABORTED", "by the outgoing officers")
