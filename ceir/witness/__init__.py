"""A witness of the register's log: cosigns checkpoints that extend what it cosigned before.

``ceir custody witness serve`` runs one. It trusts one custody policy (version
0) and walks the chain from there when given later ones, so it follows the
log across a handover to the new custodian's key.

===========  ==================================================================
module       what it holds
===========  ==================================================================
``state``    the last cosigned size and root per log, saved atomically
``service``  ``Witness.add_checkpoint``: every check, then the cosignature
``server``   the gRPC ``WitnessService`` and health listener
===========  ==================================================================
"""

from .server import RunningWitness, WitnessConfig, create_witness_server, serve_witness
from .service import Witness
from .state import LogState, StateError, load_state, save_state

__all__ = [
    "LogState",
    "RunningWitness",
    "StateError",
    "Witness",
    "WitnessConfig",
    "create_witness_server",
    "load_state",
    "save_state",
    "serve_witness",
]
