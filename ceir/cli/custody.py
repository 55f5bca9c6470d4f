"""``ceir custody``: the handover of the register, step by step (docs/custody.md).

Keys, policies and signatures are made here, on the officers' and
witnesses' own machines (``officer-key``, ``witness-key``, ``draft``,
``sign``: nothing is sent anywhere); the remote steps (``status``,
``propose``, ``submit``, ... in ``_custody_remote``) call a register's
CustodyService like any other client; ``verify`` checks the evidence of a
handover offline; ``witness serve`` runs a witness.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from ceir.audit.keys import generate_signing_key
from ceir.audit.note import NoteSignature, Verifier, sign_note
from ceir.custody import CustodyPolicy, Officer, Threshold, Witness, split_note
from ceir.custody.cosignature import CosignatureVerifier
from ceir.custody.evidence import verify_evidence
from ceir.custody.keyfiles import (
    public_path,
    read_note_key,
    write_cosigner_key,
    write_note_key,
)
from ceir.service.merkle_log import DEFAULT_ORIGIN

from . import _custody_remote as remote_steps
from ._output import CliError, err, out, reporting_errors
from ._witness import witness_app

custody_app = typer.Typer(
    name="custody",
    help="Hand the register over to a new custodian: keys, policies, signatures, the "
    "ceremony's steps, witnesses, and the evidence.",
    no_args_is_help=True,
)

NewFile = Annotated[Path, typer.Argument(dir_okay=False, help="The private key file to create.")]
KeyName = Annotated[str, typer.Argument(help="The key's name, e.g. officer.telkomsel.example/ayu.")]


@custody_app.command("officer-key")
def officer_key(name: KeyName, file: NewFile) -> None:
    """Make an officer's Ed25519 key: FILE (owner-only) and FILE.pub (its verifier key).

    Prints the verifier key, which goes into a policy's officer line.
    """
    with reporting_errors():
        signer = write_note_key(file, name, generate_signing_key())
    out().print(signer.verifier.vkey, soft_wrap=True)
    err().print(
        f"private key in {file} (keep it off the server), verifier key in {public_path(file)}"
    )


@custody_app.command("witness-key")
def witness_key(name: KeyName, file: NewFile) -> None:
    """Make a witness's note key (FILE) and cosigner key (FILE.cosigner), each with a .pub.

    The note key signs policies and handover notes, the cosigner key
    cosigns checkpoints (c2sp.org/tlog-cosignature).

    Prints NOTEPUB:COSIGNERPUB, the value of `draft --witness`.
    """
    cosigner_file = file.with_name(file.name + ".cosigner")
    with reporting_errors():
        if cosigner_file.exists():
            raise CliError(f"{cosigner_file} exists; choose another file name")
        signer = write_note_key(file, name, generate_signing_key())
        cosigner = write_cosigner_key(cosigner_file, name, generate_signing_key())
    out().print(f"{public_path(file)}:{public_path(cosigner_file)}", soft_wrap=True)
    err().print(f"note key {signer.verifier.vkey}", soft_wrap=True)
    err().print(f"cosigner key {cosigner.verifier.vkey}", soft_wrap=True)


@custody_app.command("draft")
def draft(
    version: Annotated[int, typer.Option(min=0, help="The policy's version: 0, 1, ...")],
    custodian: Annotated[str, typer.Option(help="Who runs the register and signs its log.")],
    endpoint: Annotated[str, typer.Option(metavar="HOST:PORT", help="Where the custodian serves.")],
    log_key: Annotated[
        str, typer.Option(help="The custodian's log key: a verifier key or a file holding one.")
    ],
    expires: Annotated[
        str, typer.Option(help="When the policy expires: Unix seconds or an ISO date (UTC).")
    ],
    organisation: Annotated[
        list[str],
        typer.Option(metavar="ORG:M", help="M of ORG's officers must sign (repeat per org)."),
    ],
    officer: Annotated[
        list[str],
        typer.Option(
            metavar="ORG:PUB", help="An officer of ORG: a .pub file or verifier key (repeat)."
        ),
    ],
    witness: Annotated[
        list[str],
        typer.Option(
            metavar="NOTEPUB:COSIGNERPUB",
            help="A witness's note key and cosigner key: .pub files or verifier keys (repeat).",
        ),
    ],
    witness_quorum: Annotated[int, typer.Option(min=1, help="How many witnesses must sign.")] = 1,
    origin: Annotated[str, typer.Option(help="The log's origin line.")] = DEFAULT_ORIGIN,
    complaints: Annotated[
        str | None, typer.Option(help="Who owns the complaints desk (default: the custodian).")
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", dir_okay=False, help="Write here, not to stdout.")
    ] = None,
) -> None:
    """Compose a canonical custody policy text from its parts (docs/custody.md).

    The text is what officers and witnesses sign (`ceir custody sign`); it is
    checked as a verifier would (thresholds, quorum, distinct keys) first.
    """
    with reporting_errors():
        try:
            policy = CustodyPolicy(
                version=version,
                origin=origin,
                custodian=custodian,
                endpoint=endpoint,
                log_key=Verifier.from_vkey(_key_value(log_key)),
                complaints=complaints or custodian,
                expires=_seconds(expires),
                thresholds=tuple(_threshold(value) for value in organisation),
                officers=tuple(_officer(value) for value in officer),
                witness_quorum=witness_quorum,
                witnesses=tuple(_witness(value) for value in witness),
            )
        except ValueError as error:
            raise CliError(f"not a valid policy: {error}") from None
        _write_or_print(policy.text(), out_file)


@custody_app.command("sign")
def sign(
    document: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="A text to sign, or a signed note to add to."
        ),
    ],
    key: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="Your key file (`officer-key`, `witness-key`)."
        ),
    ],
    out_file: Annotated[
        Path | None, typer.Option("--out", dir_okay=False, help="Write here, not to stdout.")
    ] = None,
) -> None:
    """Add your signature line to a document (a policy, handover or abort note).

    Signs the document's text as it is: read it first. Sends nothing anywhere;
    give the result to `ceir custody submit` (or to the next signer).
    """
    with reporting_errors():
        signer = read_note_key(key)
        text, lines = _document(document.read_text(encoding="utf-8"))
        if any((line.name, line.key_id) == (signer.name, signer.key_id) for line in lines):
            raise CliError(f"{document} is already signed by {signer.verifier.label}")
        signed = sign_note(text, [signer])
        line = signed[len(text) + 1 :]
        existing = "".join(existing.line() for existing in lines)
        _write_or_print(text + "\n" + existing + line, out_file)
        err().print(f"signed by {signer.verifier.label}")


@custody_app.command("verify")
def verify(
    evidence: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="The evidence directory.")
    ],
) -> None:
    """Check the evidence of a handover, one line per check; exit code 1 if any fails.

    policy-0.note is the trust root: check it against the policy you were
    given. Expiry is judged at the handover's time (the first checkpoint's).
    """
    with reporting_errors():
        checks = verify_evidence(evidence, int(time.time()))
    console = out()
    for check in checks:
        style = "green" if check.ok else "bold red"
        console.print(check.line(), style=style, soft_wrap=True, markup=False)
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


def _document(text: str) -> tuple[str, tuple[NoteSignature, ...]]:
    """The text to sign and the signature lines already on it."""
    if "\n\n" in text:
        return split_note(text)
    if not text.endswith("\n"):
        raise CliError("the document does not end with a newline: not a note text")
    return text, ()


def _write_or_print(text: str, path: Path | None) -> None:
    if path is None:
        print(text, end="")
    else:
        path.write_text(text, encoding="utf-8")


def _key_value(value: str) -> str:
    """A verifier key given as itself or as a file holding it (a .pub file)."""
    path = Path(value)
    if "+" not in value or path.is_file():
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise CliError(
                f"{value!r} is neither a verifier key nor a readable file: {error}"
            ) from None
    return value


def _split(value: str, option: str, parts: str) -> tuple[str, str]:
    first, colon, second = value.partition(":")
    if not colon or not first or not second:
        raise CliError(f"{option} {value!r} is not {parts}")
    return first, second


def _threshold(value: str) -> Threshold:
    name, count = _split(value, "--organisation", "ORG:M")
    if not count.isdigit():
        raise CliError(f"--organisation {value!r}: M must be a whole number")
    return Threshold(name, int(count))


def _officer(value: str) -> Officer:
    name, key = _split(value, "--officer", "ORG:PUB")
    return Officer(name, Verifier.from_vkey(_key_value(key)))


def _witness(value: str) -> Witness:
    note_key, cosigner_key = _split(value, "--witness", "NOTEPUB:COSIGNERPUB")
    return Witness(
        Verifier.from_vkey(_key_value(note_key)),
        CosignatureVerifier.from_vkey(_key_value(cosigner_key)),
    )


def _seconds(value: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--expires {value!r} is neither Unix seconds nor an ISO date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


for _name, _command in remote_steps.COMMANDS.items():
    custody_app.command(_name)(_command)
custody_app.add_typer(witness_app)
