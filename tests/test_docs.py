"""The documentation under docs/ stays true to the code.

Tables in the docs that restate the code (permissions, registration sources,
decision rules, error reasons, change kinds) are parsed and compared with
the code; every RPC, reason and change kind must be documented; grpcurl
examples must be requests the API accepts; the layering that
docs/architecture.md describes must hold in the imports.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor

import ceir.v1
from ceir.api.errors import CODES
from ceir.domain.errors import PermissionDenied
from ceir.domain.lists import (
    MAX_NOTIFICATIONS_PER_IMEI,
    Effect,
    GraceExpired,
    ListState,
    NewNotification,
)
from ceir.domain.model import (
    BlacklistCause,
    BlacklistEntry,
    Caller,
    Change,
    ChangeKind,
    Decision,
    OrgKind,
    Phase,
    Policy,
    Registration,
    RegistrationSource,
)
from ceir.domain.permissions import (
    ACTION_KINDS,
    SOURCE_KINDS,
    Action,
    require,
    require_may_recover,
    require_may_revoke,
    require_own_imsi,
)
from ceir.domain.validation import raise_if
from ceir.v1 import types_pb2

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
INTEGRATION = DOCS / "integration-teams.md"
OWN_DOCS = ("architecture.md", "integration-teams.md", "regulators.md", "domain.md")
PLANNED = "planned, not yet implemented"


# --- reading Markdown ---------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    """The cells of one table row, trimmed, without their backticks."""
    return [cell.strip().replace("`", "") for cell in line.strip().strip("|").split("|")]


def markdown_table(text: str, header: list[str]) -> list[dict[str, str]]:
    """The rows of the table whose header row is exactly ``header``."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("|") and _cells(line) == header:
            rows: list[dict[str, str]] = []
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    break
                cells = _cells(row)
                assert len(cells) == len(header), f"row {row!r} has {len(cells)} cells"
                rows.append(dict(zip(header, cells, strict=True)))
            assert rows, f"the table {header} has no rows"
            return rows
    raise AssertionError(f"no table with header {header} in the document")


def integration_doc() -> str:
    return INTEGRATION.read_text(encoding="utf-8")


def test_markdown_table_finds_rows_and_refuses_a_missing_table() -> None:
    text = "intro\n\n| a | b |\n| --- | --- |\n| `x` | y |\n| 1 | 2 |\n\nafter\n"
    assert markdown_table(text, ["a", "b"]) == [{"a": "x", "b": "y"}, {"a": "1", "b": "2"}]
    with pytest.raises(AssertionError, match="no table"):
        markdown_table(text, ["a", "c"])


# --- who may do what ----------------------------------------------------------------------

KIND_COLUMNS = [kind.value for kind in OrgKind]


def test_permission_table_reproduces_action_kinds() -> None:
    rows = markdown_table(integration_doc(), ["action", "RPCs", *KIND_COLUMNS])
    documented: dict[str, set[str]] = {}
    for row in rows:
        answers = {kind: row[kind] for kind in KIND_COLUMNS}
        assert set(answers.values()) <= {"yes", "no"}, row
        documented[row["action"]] = {kind for kind, answer in answers.items() if answer == "yes"}
    actual = {
        action.value: {kind.value for kind in kinds} for action, kinds in ACTION_KINDS.items()
    }
    assert documented == actual


def test_permission_table_names_every_rpc_once() -> None:
    rows = markdown_table(integration_doc(), ["action", "RPCs", *KIND_COLUMNS])
    named = [rpc.strip() for row in rows for rpc in row["RPCs"].split(",")]
    # A witness serves WitnessService, not the register: anyone may call it;
    # PublicLookupService is the public's, on the lookup listener, without credentials.
    public = ("WitnessService", "PublicLookupService")
    served = [m.name for m in published_methods() if m.containing_service.name not in public]
    assert sorted(named) == sorted(served)


def test_source_table_reproduces_source_kinds() -> None:
    rows = markdown_table(integration_doc(), ["source", "registered by"])
    documented = {row["source"]: row["registered by"] for row in rows}
    actual = {
        f"REGISTRATION_SOURCE_{source.name}": kind.value for source, kind in SOURCE_KINDS.items()
    }
    assert documented == actual


REGULATOR_ROWS = {
    "change the policy": (Action.UPDATE_POLICY,),
    "read the policy": (Action.READ_POLICY,),
    "check an IMEI": (Action.CHECK,),
    "read an IMEI's record and history": (Action.READ_RECORD,),
    "list notifications (every operator's)": (Action.LIST_NOTIFICATIONS,),
    "receive the lists (snapshot and change feed)": (Action.SYNC_LISTS,),
    "register devices": (Action.REGISTER,),
    "revoke registrations": (Action.REVOKE,),
    "pair an IMEI with an IMSI (complaint desk)": (Action.MANAGE_EXCEPTIONS,),
    "report stolen devices (for the police)": (Action.REPORT_STOLEN,),
    "lift a stolen report (report recovered)": (Action.REPORT_RECOVERED,),
    "file and change stolen-phone cases (for the police)": (Action.STOLEN_CASES,),
    "read stolen-phone cases": (Action.READ_STOLEN_CASES,),
    "read theft alerts": (Action.THEFT_ALERTS,),
}


def test_regulators_table_matches_action_kinds() -> None:
    text = (DOCS / "regulators.md").read_text(encoding="utf-8")
    rows = markdown_table(text, ["action", "Kominfo", "Kemenperin"])
    assert {row["action"] for row in rows} == set(REGULATOR_ROWS)
    for row in rows:
        for action in REGULATOR_ROWS[row["action"]]:
            for column, kind in (("Kominfo", OrgKind.KOMINFO), ("Kemenperin", OrgKind.KEMENPERIN)):
                # "no", or "yes" / what it may do, such as "any source"
                assert (row[column] != "no") == (kind in ACTION_KINDS[action]), (row, column)


def test_every_action_is_in_the_permission_table() -> None:
    # ACTION_KINDS could miss an Action; then the doc would silently miss it too.
    assert set(ACTION_KINDS) == set(Action)


# --- acting on an entry: who may revoke, report stolen, lift a stolen report ---------------

ENTRY_HEADER = ["operation", *KIND_COLUMNS]
OWN_IMSI, FOREIGN_IMSI = "510101234567890", "510011234567890"  # 510-10's, 510-01's


def _caller(kind: OrgKind, name: str = "caller") -> Caller:
    return Caller(name, kind, ("510-10",) if kind is OrgKind.OPERATOR else ())


def _allowed(check: Callable[[], None]) -> bool:
    try:
        check()
    except PermissionDenied:
        return False
    return True


def _revoke_cell(kind: OrgKind, source: RegistrationSource) -> str:
    caller = _caller(kind)

    def revoke(registered_by: str) -> bool:
        registration = Registration("D1", (KEY,), source, "", None, "", "", registered_by, 0)
        return _allowed(lambda: require(caller, Action.REVOKE)) and _allowed(
            lambda: require_may_revoke(caller, KEY, registration)
        )

    allowed = {name for name, by in (("own", "caller"), ("other", "other")) if revoke(by)}
    return {frozenset({"own", "other"}): "any", frozenset({"own"}): "if it made it"}.get(
        frozenset(allowed), "no" if not allowed else f"unexpected {sorted(allowed)}"
    )


def _stolen_cell(kind: OrgKind) -> str:
    caller = _caller(kind)

    def report(imsi: str) -> bool:
        return _allowed(lambda: require(caller, Action.REPORT_STOLEN)) and _allowed(
            lambda: require_own_imsi(caller, imsi, "subscriber_imsi")
        )

    allowed = {name for name, imsi in (("own", OWN_IMSI), ("other", FOREIGN_IMSI)) if report(imsi)}
    return {
        frozenset({"own", "other"}): "for any subscriber",
        frozenset({"own"}): "for its own subscribers",
    }.get(frozenset(allowed), "no" if not allowed else f"unexpected {sorted(allowed)}")


def _lift_cell(kind: OrgKind, *, names_subscriber: bool) -> str:
    caller = _caller(kind)

    def lift(blocked_by: str, imsi: str) -> bool:
        entry = BlacklistEntry(KEY, BlacklistCause.STOLEN, "LP/1", blocked_by, 0, imsi)
        return _allowed(lambda: require(caller, Action.REPORT_RECOVERED)) and _allowed(
            lambda: require_may_recover(caller, KEY, entry)
        )

    if names_subscriber:
        cases = {
            "filed": ("caller", FOREIGN_IMSI),
            "subscriber": ("other", OWN_IMSI),
            "other": ("other", FOREIGN_IMSI),
        }
    else:
        cases = {"filed": ("caller", ""), "subscriber": ("other", ""), "other": ("other", "")}
    allowed = frozenset(name for name, (by, imsi) in cases.items() if lift(by, imsi))
    if allowed == set(cases):
        return "any"
    words = {
        frozenset(): "no",
        frozenset({"filed"}): "if it filed it",
        frozenset({"filed", "subscriber"}): "if it filed it, or for its own subscribers",
    }
    return words.get(allowed, f"unexpected {sorted(allowed)}")


def entry_rules_in_code() -> dict[str, dict[str, str]]:
    """The "Acting on an entry" table as the code decides it, cell by cell."""
    rows: dict[str, Callable[[OrgKind], str]] = {
        f"revoke a REGISTRATION_SOURCE_{source.name} registration": (
            lambda kind, source=source: _revoke_cell(kind, source)  # type: ignore[misc]
        )
        for source in RegistrationSource
    }
    rows["report a device stolen"] = _stolen_cell
    rows["lift a stolen report"] = lambda kind: _lift_cell(kind, names_subscriber=True)
    rows["lift a stolen report that names no subscriber"] = lambda kind: _lift_cell(
        kind, names_subscriber=False
    )
    return {
        operation: {kind.value: cell(kind) for kind in OrgKind} for operation, cell in rows.items()
    }


def test_entry_rules_table_matches_the_code() -> None:
    rows = markdown_table(integration_doc(), ENTRY_HEADER)
    documented = {row["operation"]: {k: row[k] for k in KIND_COLUMNS} for row in rows}
    assert documented == entry_rules_in_code()


def test_entry_rules_are_not_all_or_nothing() -> None:
    # Guards the comparison above against cells that cannot tell the cases apart.
    code = entry_rules_in_code()
    assert code["revoke a REGISTRATION_SOURCE_TOURIST registration"]["operator"] == "if it made it"
    assert code["lift a stolen report"]["operator"] == "if it filed it, or for its own subscribers"
    assert code["lift a stolen report that names no subscriber"]["kominfo"] == "if it filed it"


# --- the published API --------------------------------------------------------------------


def published_modules() -> list[ModuleType]:
    """Every generated ``*_pb2`` module of ``ceir.v1``."""
    return [
        importlib.import_module(f"ceir.v1.{info.name}")
        for info in pkgutil.iter_modules(ceir.v1.__path__)
        if info.name.endswith("_pb2")
    ]


def published_methods() -> list[MethodDescriptor]:
    methods: list[MethodDescriptor] = []
    for module in published_modules():
        for service in module.DESCRIPTOR.services_by_name.values():
            methods.extend(service.methods)
    return methods


def test_the_api_has_services() -> None:
    # Guards the two tests below against passing on an empty list.
    assert len(published_methods()) >= 16


def test_every_service_and_rpc_is_in_the_integration_doc() -> None:
    text = integration_doc()
    missing = [
        method.full_name
        for method in published_methods()
        if not re.search(rf"\b{method.name}\b", text)
        or not re.search(rf"\b{re.escape(method.containing_service.full_name)}\b", text)
    ]
    assert missing == []


def test_every_reason_is_in_the_integration_doc() -> None:
    text = integration_doc()
    names = [value.name for value in types_pb2.Reason.DESCRIPTOR.values]
    missing = [name for name in names if not re.search(rf"\b{name}\b", text)]
    assert missing == []


def test_every_change_kind_has_an_apply_rule() -> None:
    rows = markdown_table(integration_doc(), ["change kind", "apply it to your lists"])
    documented = {row["change kind"] for row in rows}
    assert documented == {f"CHANGE_KIND_{kind.name}" for kind in ChangeKind}


# --- the decision rules -------------------------------------------------------------------

KEY = 35209900176148
IMEI = "352099001761481"
IMSI = "510101234567890"
OTHER_IMSI = "510101234567891"
ROAMER = "525011000000009"  # a Singapore SIM
NOW = 1_600_000_000_000_000  # 13 September 2020
DAY = 86_400_000_000


def feed(state: ListState, *changes: Change) -> ListState:
    """Apply changes as the feed would, numbering them."""
    for change in changes:
        state.apply(Change(**{**change.__dict__, "sequence": state.sequence + 1}))
    return state


def whitelisted(valid_until_us: int | None = None) -> Change:
    return Change(ChangeKind.WHITELIST_ADDED, KEY, valid_until_us=valid_until_us)


def blocked(cause: BlacklistCause, block_date_us: int | None = None) -> Change:
    return Change(
        ChangeKind.BLACKLIST_BLOCKED, KEY, blacklist_cause=cause, block_date_us=block_date_us
    )


def notified(imsi: str, block_date_us: int) -> Change:
    return Change(ChangeKind.NOTIFICATION_NEW, KEY, imsi=imsi, block_date_us=block_date_us)


Outcome = tuple[Decision, Effect | None]
EXPIRED = NOW - 10 * DAY  # a tourist registration that ended ten days ago


def case_clone() -> Outcome:
    state = ListState(Policy(clone_threshold=2))
    feed(state, whitelisted())
    for n in range(2):  # two SIMs: at the threshold, still fine
        decision, _ = state.decide(IMEI, f"51010100000000{n}", "", NOW + n)
        assert decision.status.name == "WHITELISTED"
    return state.decide(IMEI, IMSI, "", NOW + 2)


CASES: dict[str, Callable[[], Outcome]] = {
    "malformed": lambda: ListState().decide("35209900176148X", IMSI, "", NOW),
    "roamer": lambda: feed(ListState(), blocked(BlacklistCause.STOLEN)).decide(
        IMEI, ROAMER, "", NOW
    ),
    "exception": lambda: feed(
        ListState(),
        blocked(BlacklistCause.STOLEN),
        Change(ChangeKind.EXCEPTION_ADDED, KEY, imsi=IMSI),
    ).decide(IMEI, IMSI, "", NOW),
    "stolen": lambda: feed(ListState(), whitelisted(), blocked(BlacklistCause.STOLEN)).decide(
        IMEI, IMSI, "", NOW
    ),
    "blocked-unregistered": lambda: feed(
        ListState(), blocked(BlacklistCause.NOTIFICATION_EXPIRED, NOW - DAY)
    ).decide(IMEI, IMSI, "", NOW),
    "blocked-expired-tourist": lambda: feed(
        ListState(),
        whitelisted(EXPIRED),
        blocked(BlacklistCause.NOTIFICATION_EXPIRED, NOW - DAY),
    ).decide(IMEI, IMSI, "", NOW),
    "registered": lambda: feed(ListState(), whitelisted(NOW + DAY)).decide(IMEI, IMSI, "", NOW),
    "clone": case_clone,
    "enforce": lambda: ListState(Policy(phase=Phase.ENFORCE)).decide(IMEI, IMSI, "", NOW),
    "enforce-expired-tourist": lambda: feed(
        ListState(Policy(phase=Phase.ENFORCE)), whitelisted(EXPIRED)
    ).decide(IMEI, IMSI, "", NOW),
    "first-sight": lambda: ListState().decide(IMEI, IMSI, "6281100000001", NOW),
    "known-pair": lambda: feed(ListState(), notified(IMSI, NOW + DAY)).decide(IMEI, IMSI, "", NOW),
    "new-imsi": lambda: feed(ListState(), notified(OTHER_IMSI, NOW + DAY)).decide(
        IMEI, IMSI, "", NOW
    ),
    "many-imsis": lambda: feed(
        ListState(),
        *(notified(f"5101099{n:08d}", NOW + DAY) for n in range(MAX_NOTIFICATIONS_PER_IMEI)),
    ).decide(IMEI, IMSI, "", NOW),
    "expired-tourist": lambda: feed(ListState(), whitelisted(EXPIRED)).decide(IMEI, IMSI, "", NOW),
    "grace-over": lambda: feed(ListState(), notified(IMSI, NOW)).decide(IMEI, IMSI, "", NOW),
}

RULE_HEADER = ["rule", "case", "when", "status", "reasons", "block date", "the check writes"]
EFFECTS: dict[str, type[NewNotification] | type[GraceExpired] | None] = {
    "nothing": None,
    "notification": NewNotification,
    "blacklist entry": GraceExpired,
}


def decision_rows() -> dict[str, dict[str, str]]:
    rows = markdown_table(integration_doc(), RULE_HEADER)
    by_case = {row["case"]: row for row in rows}
    assert len(by_case) == len(rows), "a case is listed twice"
    return by_case


def test_decision_table_lists_exactly_the_tested_cases() -> None:
    assert set(decision_rows()) == set(CASES)


def test_decision_table_rules_are_in_order() -> None:
    rules = [int(row["rule"]) for row in decision_rows().values()]
    assert rules == sorted(rules) and set(rules) == set(range(1, 7))


@pytest.mark.parametrize("case", sorted(CASES))
def test_decision_table_row_matches_list_state(case: str) -> None:
    row = decision_rows()[case]
    decision, effect = CASES[case]()
    documented = (
        row["status"],
        tuple(reason.strip() for reason in row["reasons"].split(",")),
        row["block date"],
        EFFECTS[row["the check writes"]],
    )
    actual = (
        decision.status.name,
        tuple(f"REASON_{reason.name}" for reason in decision.reasons),
        "no" if decision.block_date_us is None else "yes",
        None if effect is None else type(effect),
    )
    assert documented == actual


def test_the_documented_bound_on_notified_imsis_is_the_codes() -> None:
    assert f"**At most {MAX_NOTIFICATIONS_PER_IMEI} notified IMSIs per IMEI**" in integration_doc()


def test_a_new_imsi_keeps_the_imeis_block_date() -> None:
    # The doc says the block clock belongs to the IMEI, not to the pair.
    _, effect = CASES["new-imsi"]()
    assert isinstance(effect, NewNotification) and effect.block_date_us == NOW + DAY


# --- error reasons ------------------------------------------------------------------------


def _raised_class(call: ast.Call) -> str | None:
    """``X`` for calls ``X(...)`` and ``X.field(...)``."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if (
        isinstance(func, ast.Attribute)
        and func.attr == "field"
        and isinstance(func.value, ast.Name)
    ):
        return func.value.id
    return None


def reasons_in_code() -> dict[str, set[str]]:
    """Every ErrorInfo reason the register can raise, with its status code names.

    Found by reading the source: domain errors built with a constant
    ``reason=`` (or their class's default reason), and ``raise_if`` calls.
    """
    classes = {error_class.__name__: error_class for error_class in CODES}
    raise_if_default = inspect.signature(raise_if).parameters["reason"].default
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "ceir").rglob("*.py")):
        if "v1" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            keywords = {keyword.arg: keyword.value for keyword in node.keywords}
            name = _raised_class(node)
            if name in classes:
                error_class = classes[name]
                given = keywords.get("reason")
                code = CODES[error_class].name
                reason = error_class.reason if given is None else _constant(given)
            elif name == "raise_if":
                given = node.args[1] if len(node.args) > 1 else keywords.get("reason")
                code = "INVALID_ARGUMENT"
                reason = raise_if_default if given is None else _constant(given)
            else:
                continue
            if reason is not None:
                found.setdefault(reason, set()).add(code)
    return found


def _constant(node: ast.expr) -> str | None:
    """A string constant's value; None for anything computed (a pass-through)."""
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def test_reasons_in_code_are_found() -> None:
    # Guards the comparison below against a scanner that finds nothing.
    found = reasons_in_code()
    assert found["IMEI_ALREADY_REGISTERED"] == {"ALREADY_EXISTS"}
    assert found["REQUEST_ID_REUSED"] == {"INVALID_ARGUMENT"}


def test_error_table_matches_the_reasons_in_code() -> None:
    rows = markdown_table(integration_doc(), ["reason", "code", "when"])
    documented: dict[str, set[str]] = {}
    for row in rows:
        documented.setdefault(row["reason"], set()).update(
            code.strip() for code in row["code"].split(",")
        )
    assert documented == reasons_in_code()


# --- grpcurl examples ---------------------------------------------------------------------

METHOD = re.compile(r"\b(ceir\.v1\.\w+)/(\w+)\b")
INLINE_BODY = re.compile(r"-d '([^']*)'")


@dataclass(frozen=True)
class Example:
    doc: str
    method: str  # ceir.v1.Service.Method
    bodies: list[str]


def _shell_blocks(text: str) -> Iterator[list[str]]:
    """The lines of each ```sh block, with backslash continuations joined."""
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        yield block.replace("\\\n", " ").splitlines()


def grpcurl_examples() -> list[Example]:
    examples: list[Example] = []
    for name in OWN_DOCS:
        for lines in _shell_blocks((DOCS / name).read_text(encoding="utf-8")):
            for index, line in enumerate(lines):
                method = METHOD.search(line)
                if "grpcurl" not in line or method is None:
                    continue
                full_name = f"{method.group(1)}.{method.group(2)}"
                bodies = INLINE_BODY.findall(line)
                if "-d @" in line and "<<'EOF'" in line:
                    end = lines.index("EOF", index)
                    bodies.append("\n".join(lines[index + 1 : end]))
                examples.append(Example(name, full_name, bodies))
    return examples


def _json_documents(text: str) -> Iterator[Any]:
    """Every JSON value in ``text``, one after another (a grpcurl ``-d @`` body)."""
    decoder = json.JSONDecoder()
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return
        value, position = decoder.raw_decode(text, position)
        yield value


def _canonical_field_masks(value: Any, descriptor: Descriptor) -> Any:
    """grpcurl 1.8 writes a FieldMask as ``{"paths": ["grace_days"]}``; the
    proto3 JSON mapping (and so ``json_format``) wants ``"graceDays"``."""
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        field = descriptor.fields_by_name.get(key)
        message = None if field is None else field.message_type
        if message is not None and message.full_name == "google.protobuf.FieldMask":
            if isinstance(item, dict):
                item = ",".join(_camel(path) for path in item["paths"])
        elif message is not None:
            item = _canonical_field_masks(item, message)
        result[key] = item
    return result


def _camel(path: str) -> str:
    first, *rest = path.split("_")
    return first + "".join(word.capitalize() for word in rest)


def test_the_docs_have_grpcurl_examples() -> None:
    examples = grpcurl_examples()
    assert len(examples) >= 10
    assert sum(len(example.bodies) for example in examples) >= 10


@pytest.mark.parametrize(
    "example", grpcurl_examples(), ids=lambda example: f"{example.doc}:{example.method}"
)
def test_grpcurl_example_is_a_valid_request(example: Example) -> None:
    published_modules()  # registers every ceir.v1 file in the default pool
    method = descriptor_pool.Default().FindMethodByName(example.method)
    request_class = message_factory.GetMessageClass(method.input_type)
    for body in example.bodies:
        for document in _json_documents(body):
            request = request_class()
            json_format.ParseDict(_canonical_field_masks(document, method.input_type), request)


# --- links --------------------------------------------------------------------------------


def _anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown text."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("name", OWN_DOCS)
def test_links_between_docs_resolve(name: str) -> None:
    text = (DOCS / name).read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    broken = [target for target in targets if _is_broken(target, DOCS / name)]
    assert broken == []


def _is_broken(target: str, source: Path) -> bool:
    """True if a relative link (``file.md#anchor``) names no file or heading."""
    if "://" in target:
        return False
    path, _, anchor = target.partition("#")
    linked = source.parent / path if path else source
    if not linked.is_file():
        return True
    return bool(anchor) and anchor not in _anchors(linked.read_text(encoding="utf-8"))


# --- the layering architecture.md describes -----------------------------------------------


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports left out)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _is_under(name: str, *packages: str) -> bool:
    return any(name == package or name.startswith(f"{package}.") for package in packages)


LAYERS = ("ceir.api", "ceir.service", "ceir.storage", "ceir.audit", "ceir.domain")  # top down


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_no_layer_above_it(layer: str) -> None:
    above = LAYERS[: LAYERS.index(layer)]
    directory = ROOT.joinpath(*layer.split("."))
    offending = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in directory.rglob("*.py")
        for name in _imports(path)
        if _is_under(name, *above) or (layer != "ceir.api" and _is_under(name, "ceir.v1"))
    }
    assert offending == set()


def test_domain_imports_no_grpc_protobuf_or_sqlalchemy() -> None:
    forbidden = ("grpc", "google", "sqlalchemy", "alembic", "ceir.v1", "ceir.api", "ceir.service")
    offending = {
        f"{path.name}: {name}"
        for path in (ROOT / "ceir" / "domain").glob("*.py")
        for name in _imports(path)
        if _is_under(name, *forbidden, "ceir.storage")
    }
    assert offending == set()


def test_services_and_storage_import_no_protobuf() -> None:
    offending = {
        f"{path.relative_to(ROOT)}: {name}"
        for package in ("service", "storage")
        for path in (ROOT / "ceir" / package).rglob("*.py")
        for name in _imports(path)
        if _is_under(name, "grpc", "google.protobuf", "ceir.v1", "ceir.api")
    }
    assert offending == set()


# The published verification library an operator may use, like a client of
# Go's sumdb/note; not ceir.audit.leaf or ceir.audit.verify, which work on the
# server's internal change type (operators_sim/leaf.py encodes leaves itself).
AUDIT_LIBRARY = (
    "ceir.audit.merkle",
    "ceir.audit.note",
    "ceir.audit.checkpoint",
    "ceir.audit.keys",
    "ceir.audit.errors",
)


# Data both sides read: the organisations of the brief, one table that
# imports nothing but the standard library.
SHARED_TABLES = ("ceir.organisations",)
# The custody library (policies, cosignatures, handover, abort and evidence
# files): as pure as ceir.audit, what a node or a regulator checks with.
CUSTODY_LIBRARY = ("ceir.custody",)
# The compact tables (sorted arrays plus an overlay): the register's lists
# and the node's replica are one implementation; numpy and the standard
# library only.
COMPACT_LIBRARY = ("ceir.compact",)


def test_operators_sim_uses_only_the_published_api() -> None:
    # embedded.py starts a server of its own; architecture.md names it.
    offending = {
        f"{path.name}: {name}"
        for path in (ROOT / "operators_sim").rglob("*.py")
        if path.name != "embedded.py"
        for name in _imports(path)
        if _is_under(name, "ceir")
        and not _is_under(
            name, "ceir.v1", *AUDIT_LIBRARY, *SHARED_TABLES, *CUSTODY_LIBRARY, *COMPACT_LIBRARY
        )
    }
    assert offending == set()


def test_the_compact_tables_import_nothing_of_the_register() -> None:
    offending = {
        f"{path.name}: {name}"
        for path in (ROOT / "ceir" / "compact").rglob("*.py")
        for name in _imports(path)
        if _is_under(name, "ceir", "grpc", "google.protobuf", "sqlalchemy")
    }
    assert offending == set()


@pytest.mark.parametrize("module", SHARED_TABLES)
def test_a_shared_table_imports_only_the_standard_library(module: str) -> None:
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    assert _imports(path) <= {"__future__", "dataclasses"}


def test_architecture_names_the_modules_operators_sim_may_use() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    for module in (*AUDIT_LIBRARY, *SHARED_TABLES, *CUSTODY_LIBRARY, *COMPACT_LIBRARY):
        assert f"`{module}`" in text


def test_handover_is_documented_as_planned_until_custody_exists() -> None:
    """Until the ceremony exists the handover sections say so; once the
    custody formats exist they say those are built (``ceir/custody``)."""
    planned = [
        name
        for name in ("architecture.md", "regulators.md")
        if PLANNED in (DOCS / name).read_text(encoding="utf-8").lower()
    ]
    if (ROOT / "ceir" / "custody").exists():
        assert planned == [], "custody is built: describe it, not the plan"
    else:
        assert planned == ["architecture.md", "regulators.md"]
