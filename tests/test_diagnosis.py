"""Diagnosis: ``explain`` gives the verdict ``decide`` gives, on any lists,
and changes nothing; DiagnoseImei through a real server explains a dead
second slot, a stolen phone and a pairing, with the IMEI's changes and
who made them, and hides other operators' subscribers."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.domain.explain import RULES, Outcome, explain
from ceir.domain.identifiers import full_imei
from ceir.domain.lists import ListState
from ceir.domain.model import Change, ChangeKind, Policy, Reason
from ceir.v1 import complaints_pb2 as pb
from ceir.v1 import registry_pb2, types_pb2

from .helpers import INDOSAT_IMSI, ROAMER_IMSI, TELKOMSEL_IMSI, Client, imei, violations
from .test_decide_many import KEYS, NOW, SECOND, Lists, _state, _tracker, lists_st, query_st


@settings(max_examples=400, deadline=None)
@given(
    lists_st,
    st.lists(st.tuples(st.sampled_from([0, SECOND, 86_400 * SECOND]), query_st), max_size=20),
)
def test_explain_decides_as_decide_and_changes_nothing(
    lists: Lists, queries: list[tuple[int, tuple[str, str, str]]]
) -> None:
    state = _state(lists)
    now = NOW
    for step, (imei_value, imsi, msisdn) in queries:
        now += step
        before = _tracker(state)
        explained = explain(state, imei_value, imsi, msisdn, now)
        assert _tracker(state) == before  # no sighting recorded
        decision, _effect = state.decide(imei_value, imsi, msisdn, now)
        assert explained.decision == decision
        outcomes = [s.outcome for s in explained.steps]
        assert [s.rule for s in explained.steps] == list(RULES)
        decided = outcomes.index(Outcome.DECIDED)
        assert outcomes[:decided] == [Outcome.PASSED] * decided
        assert outcomes[decided + 1 :] == [Outcome.NOT_REACHED] * (len(RULES) - decided - 1)


def test_the_rule_that_decides_is_the_one_the_reasons_name() -> None:
    state = ListState(Policy(clone_threshold=1))
    state.apply(Change(ChangeKind.WHITELIST_ADDED, KEYS[0], sequence=1))
    state.apply(Change(ChangeKind.EXCEPTION_ADDED, KEYS[1], imsi=TELKOMSEL_IMSI, sequence=2))
    cases = {
        "12345": "malformed_imei",
        full_imei(KEYS[2]): "unregistered",
        full_imei(KEYS[0]): "whitelist",
        full_imei(KEYS[1]): "exception_pair",
    }
    for value, rule in cases.items():
        steps = explain(state, value, TELKOMSEL_IMSI, "", NOW).steps
        assert next(s.rule for s in steps if s.outcome is Outcome.DECIDED) == rule, value
    steps = explain(state, full_imei(KEYS[2]), ROAMER_IMSI, "", NOW).steps
    assert steps[1].outcome is Outcome.DECIDED
    # A second IMSI on a registered IMEI past the threshold: a suspected clone,
    # explained without recording the sighting.
    state.decide(full_imei(KEYS[0]), TELKOMSEL_IMSI, "", NOW)
    explained = explain(state, full_imei(KEYS[0]), INDOSAT_IMSI, "", NOW)
    assert explained.decision.reasons == (Reason.REGISTERED, Reason.DUPLICATE_SUSPECTED)
    assert state.clones.imsis_of(KEYS[0]) == 1


def diagnose(client: Client, value: str, imsi: str = "") -> pb.DiagnoseImeiResponse:
    return client.call(
        client.complaints.DiagnoseImei, pb.DiagnoseImeiRequest(imei=value, imsi=imsi)
    )


def test_a_dead_second_slot_is_diagnosed_with_its_sibling_and_history(
    clients: dict[str, Client],
) -> None:
    telkomsel = clients["telkomsel"]
    first, second = imei(1), imei(2)
    telkomsel.register(
        first, source=types_pb2.REGISTRATION_SOURCE_GRANDFATHERED, reference="dump", brand="B"
    )
    telkomsel.check_imei(second)  # greylisted, notified
    answer = diagnose(telkomsel, second, TELKOMSEL_IMSI)
    assert answer.status == types_pb2.EQUIPMENT_STATUS_GREYLISTED
    assert [r.rule for r in answer.rules] == list(RULES)
    decided = [r for r in answer.rules if r.outcome == pb.RULE_OUTCOME_DECIDED]
    assert [r.rule for r in decided] == ["unregistered"]
    assert not answer.HasField("registration")
    assert [n.imsi for n in answer.notifications] == [TELKOMSEL_IMSI]
    assert [(c.kind, c.actor) for c in answer.changes] == [
        (types_pb2.CHANGE_KIND_NOTIFICATION_NEW, "telkomsel")
    ]
    registered = diagnose(telkomsel, first)
    assert registered.status == types_pb2.EQUIPMENT_STATUS_WHITELISTED
    assert registered.registration.registered_by == "telkomsel"
    assert registered.registration_valid
    assert [(c.kind, c.actor) for c in registered.changes] == [
        (types_pb2.CHANGE_KIND_WHITELIST_ADDED, "telkomsel")
    ]
    # Diagnosis records nothing: no new change.
    assert len(diagnose(telkomsel, imei(3), TELKOMSEL_IMSI).changes) == 0
    assert len(diagnose(telkomsel, imei(3), TELKOMSEL_IMSI).changes) == 0


def test_a_stolen_phone_is_diagnosed_and_others_subscribers_stay_hidden(
    clients: dict[str, Client],
) -> None:
    telkomsel, indosat = clients["telkomsel"], clients["indosat"]
    kemenperin = clients["kemenperin"]
    kemenperin.register(imei(5))
    telkomsel.call(
        telkomsel.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[imei(5)], police_report="LP/9/2020", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    own = diagnose(telkomsel, imei(5), TELKOMSEL_IMSI)
    assert own.status == types_pb2.EQUIPMENT_STATUS_BLACKLISTED
    assert list(own.reasons) == [types_pb2.REASON_STOLEN]
    assert own.blacklist.police_report == "LP/9/2020"
    assert own.blacklist.subscriber_imsi == TELKOMSEL_IMSI
    assert [c.actor for c in own.changes] == ["kemenperin", "telkomsel"]
    assert own.changes[1].imsi == TELKOMSEL_IMSI
    other = diagnose(indosat, imei(5), INDOSAT_IMSI)
    assert other.status == types_pb2.EQUIPMENT_STATUS_BLACKLISTED
    assert other.blacklist.subscriber_imsi == "" and other.changes[1].imsi == ""
    # A malformed IMEI is diagnosed (rule 1), a malformed IMSI refused.
    malformed = diagnose(telkomsel, "12345")
    assert malformed.rules[0].outcome == pb.RULE_OUTCOME_DECIDED and not malformed.imei_key
    with pytest.raises(grpc.RpcError) as caught:
        diagnose(telkomsel, imei(5), "51010x")
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in violations(caught.value)] == ["imsi"]
    with pytest.raises(grpc.RpcError) as caught:
        diagnose(clients["customs"], imei(5))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
