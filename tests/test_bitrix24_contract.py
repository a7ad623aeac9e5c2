"""The Bitrix24 connector against the contract fake, in process: events -> the exact requests, the hooks,
idempotency, limits, lookup, the employee import and `check()` in plain words."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import ValidationError

from bridge.connector_api import CallEvent, ConnectorContext, PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.testing import MemoryRefs, MemoryState
from bridge.recordings.links import RecordingLinks
from connectors.bitrix24 import Bitrix24Config, Bitrix24Connector
from connectors.bitrix24.errors import MethodBlocked, NotAuthorised
from connectors.bitrix24.oauth import APP_TOKEN_KEY, TOKENS_KEY
from tests.fakes.bitrix24 import FakeBitrix24

PUBLIC = "https://calls.example.com"
NOW = time.time()
USERS = {"101": "1", "102": "7", "103": "9"}
CUSTOMER = "79161234567"
REGISTER = "telephony.externalCall.register"
FINISH = "telephony.externalCall.finish"
SHOW = "telephony.externalCall.show"
HIDE = "telephony.externalCall.hide"
ATTACH = "telephony.externalCall.attachRecord"
TASK = "tasks.task.add"
T0 = 1_767_225_600.0


def links(public_url: str | None) -> RecordingLinks:
    """The core's signed recording links, with a fixed clock so a link is the same in every run."""
    return RecordingLinks(
        lambda: "contract-test-secret", public_url, ttl_seconds=90 * 86400, clock=lambda: NOW
    )


@pytest.fixture
def fake() -> Iterator[FakeBitrix24]:
    with FakeBitrix24() as server:
        yield server


class Harness:
    def __init__(
        self, fake: FakeBitrix24, *, install: bool = True, public_url: str | None = PUBLIC, **settings: Any
    ):
        self.fake = fake
        self.state = MemoryState()
        self.refs = MemoryRefs()
        self.originated: list[tuple[str, str]] = []
        self.originate_error: Exception | None = None
        base = {
            "portal": fake.url,
            "oauth_url": fake.oauth_url,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "users": USERS,
            "auto_import": False,
            "missed_task_description": "Call back {number} (call {entry_id})",
        }
        self.connector = Bitrix24Connector({**base, **settings})
        self.connector.bind(
            ConnectorContext(
                state=self.state,
                originate=self._originate,
                public_url=public_url,
                recording_url=links(public_url).url,
            )
        )
        app = Flask("test")
        app.register_blueprint(self.connector.blueprint(), url_prefix="/connectors/bitrix24")
        self.http: FlaskClient = app.test_client()
        if install:
            answer = self.install()
            assert answer.status_code == 200, answer.json

    def _originate(self, extension: str, number: str) -> str:
        if self.originate_error is not None:
            raise self.originate_error
        self.originated.append((extension, number))
        return f"cb-{len(self.originated)}"

    def install(self, **auth: str) -> Any:
        access, refresh = self.fake.issue_tokens()
        form = {
            "event": "ONAPPINSTALL",
            "auth[access_token]": access,
            "auth[refresh_token]": refresh,
            "auth[expires_in]": "3600",
            "auth[application_token]": self.fake.application_token,
            "auth[domain]": self.fake.host,
            "auth[member_id]": self.fake.member_id,
            **{f"auth[{k}]": v for k, v in auth.items()},
        }
        return self.http.post("/connectors/bitrix24/install", data=form)

    def handle(self, *events: CallEvent) -> None:
        for event in events:
            self.connector.handle(event, self.refs)

    def requests(self, *methods: str) -> list[tuple[str, dict[str, Any]]]:
        wanted = set(methods) or {REGISTER, FINISH, SHOW, HIDE, ATTACH, TASK}
        return [(c.method, norm(c.params)) for c in self.fake.calls if c.ok and c.method in wanted]


def norm(value: Any) -> Any:
    """Batch parameters arrive as strings, plain ones as JSON types: compare them as strings."""
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [norm(v) for v in value]
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def ev(type_: str, entry: str = "E1", **kw: Any) -> CallEvent:
    base: dict[str, Any] = {
        "type": type_,
        "entry_id": entry,
        "key": kw.pop("key", type_),
        "occurred_at": T0,
        "direction": "incoming",
        "customer_number": CUSTOMER,
        "line_number": "74951234567",
        "started_at": T0,
    }
    base.update(kw)
    return CallEvent(**base)


def ringing(ext: str, entry: str = "E1", **kw: Any) -> CallEvent:
    return ev("call.ringing", entry, key=f"call.ringing:{ext}", extension=ext, call_id=f"L{ext}", **kw)


def answered(ext: str, entry: str = "E1", **kw: Any) -> CallEvent:
    return ev("call.answered", entry, key=f"call.answered:{ext}", extension=ext, answered_at=T0 + 5, **kw)


def ended(
    ext: str | None,
    entry: str = "E1",
    *,
    talk: int = 60,
    missed: bool = False,
    responsible: str | None = None,
    **kw: Any,
) -> CallEvent:
    answered_at = None if missed or ext is None else T0 + 5
    return ev(
        "call.ended",
        entry,
        extension=None if missed else ext,
        answered_at=answered_at,
        ended_at=T0 + 5 + talk,
        duration=5 + talk,
        talk_seconds=0 if answered_at is None else talk,
        extra={
            "status": "missed" if missed else "ended",
            "responsible": responsible or ext,
            "missed": missed,
        },
        **kw,
    )


def missed_event(responsible: str | None, entry: str = "E1") -> CallEvent:
    return replace(
        ended(None, entry, missed=True, responsible=responsible),
        type="call.missed",
        key="call.missed",
        extension=responsible,
    )


def record(entry: str = "E1", rid: str = "MToxMjM+/=") -> CallEvent:
    return ev(
        "call.recording_ready",
        entry,
        key=f"call.recording_ready:{rid}",
        recording_id=rid,
        recording_ids=(rid,),
    )


def call_of(h: Harness, entry: str = "E1") -> Any:
    (call,) = h.fake.registered(entry)
    return call


# ------------------------------------------------------------------ events -> exact requests


def test_an_answered_incoming_call(fake: FakeBitrix24) -> None:
    h = Harness(fake)
    h.handle(ringing("101"), answered("101"), ended("101", talk=42), record())
    call = call_of(h)
    assert h.requests() == [
        (
            REGISTER,
            {
                "USER_ID": "1",
                "PHONE_NUMBER": "+79161234567",
                "TYPE": "2",
                "CALL_START_DATE": "2026-01-01T00:00:00+00:00",
                "CRM_CREATE": "1",
                "SHOW": "1",
                "EXTERNAL_CALL_ID": "E1",
                "LINE_NUMBER": "74951234567",
            },
        ),
        (
            FINISH,
            {
                "CALL_ID": call.call_id,
                "USER_ID": "1",
                "DURATION": "42",
                "STATUS_CODE": "200",
                "ADD_TO_CHAT": "0",
            },
        ),
        (
            ATTACH,
            {
                "CALL_ID": call.call_id,
                "FILENAME": "MToxMjM.mp3",
                "RECORD_URL": f"{PUBLIC}/recordings/MToxMjM%2B%2F%3D?t={links(PUBLIC).token('MToxMjM+/=')}",
            },
        ),
    ]


def test_a_ring_group_gets_show_then_hide_and_finish_names_who_answered(fake: FakeBitrix24) -> None:
    h = Harness(fake)
    h.handle(ringing("101"), ringing("102"), ringing("103"), answered("102"), ended("102", talk=30))
    call = call_of(h)
    assert [(m, p.get("USER_ID")) for m, p in h.requests()] == [
        (REGISTER, "1"),
        (SHOW, ["7"]),
        (SHOW, ["9"]),
        (HIDE, ["1", "9"]),
        (FINISH, "7"),
    ]
    assert call.shown == [[1], [7], [9]] and call.hidden == [[1, 9]]


def test_a_missed_group_call_closes_the_cards_finishes_304_and_tasks_the_responsible(
    fake: FakeBitrix24,
) -> None:
    h = Harness(fake)
    h.handle(ringing("101"), ringing("102"), ended(None, missed=True, responsible="101"), missed_event("101"))
    call = call_of(h)
    methods = [(c.method, c.in_batch) for c in fake.calls if c.ok and c.method != "event.bind"]
    # hide + finish + task went out as one batch: the CRM binding was known from register.
    assert methods == [(REGISTER, False), (SHOW, False), (HIDE, True), (FINISH, True), (TASK, True)]
    (finish,) = call.finishes
    assert (finish["USER"], finish["STATUS_CODE"], finish["DURATION"]) == (1, "304", 0)
    (task,) = fake.tasks
    assert norm(task["RESPONSIBLE_ID"]) == "1"
    assert task["UF_CRM_TASK"] == [f"L_{call.crm[1]}"]
    assert task["TITLE"] == "Missed call from +79161234567"
    assert (
        task["DEADLINE"]
        == time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 3600))[:15] + task["DEADLINE"][15:]
    )
    assert h.refs.get("E1", "task") == task["id"]


def test_a_call_that_never_rang_anyone_is_registered_without_a_popup_in_the_same_batch(
    fake: FakeBitrix24,
) -> None:
    h = Harness(fake, unmapped="default", default_user="9")
    h.handle(ended(None, missed=True, responsible=None), missed_event(None))
    register, finish = h.requests(REGISTER, FINISH)
    assert register[1]["SHOW"] == "0" and register[1]["USER_ID"] == "9"
    assert finish[1]["CALL_ID"] == call_of(h).call_id and finish[1]["STATUS_CODE"] == "304"
    assert all(c.in_batch for c in fake.calls if c.method in (REGISTER, FINISH))
    # The binding was not known before that batch, so call.missed made the task.
    (task,) = fake.tasks
    assert norm(task["RESPONSIBLE_ID"]) == "9" and task["UF_CRM_TASK"] == [f"L_{call_of(h).crm[1]}"]


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (1121, "486"),
        (1111, "304"),
        (1110, "603-S"),
        (1122, "603"),
        (1133, "404"),
        (2240, "402"),
        (9999, "304"),
    ],
)
def test_an_unanswered_outgoing_call_finishes_with_the_status_of_its_disconnect_reason(
    fake: FakeBitrix24, reason: int, status: str
) -> None:
    h = Harness(fake)
    h.handle(
        ringing("101", direction="outgoing"),
        ended(None, direction="outgoing", responsible="101", disconnect_reason=reason, talk=0),
    )
    ((_, finish),) = h.requests(FINISH)
    assert (finish["STATUS_CODE"], finish["DURATION"]) == (status, "0")
    assert finish["FAILED_REASON"] == f"Mango {reason}"
    ((_, register),) = h.requests(REGISTER)
    assert register["TYPE"] == "1"


def test_a_transfer_shows_the_card_to_the_new_employee_and_finishes_with_them(fake: FakeBitrix24) -> None:
    h = Harness(fake)
    transferred = ev(
        "call.transferred",
        key="call.transferred:L2",
        extension="102",
        transferred_from="101",
        transfer_kind="blind",
    )
    h.handle(ringing("101"), answered("101"), transferred, ended("101", responsible="102"))
    assert [(m, p.get("USER_ID")) for m, p in h.requests()] == [
        (REGISTER, "1"),
        (SHOW, ["7"]),
        (HIDE, ["1"]),
        (FINISH, "7"),
    ]


def test_handle_is_safe_to_repeat(fake: FakeBitrix24) -> None:
    h = Harness(fake)
    events = [ringing("101"), ringing("102"), answered("102"), ended("102"), record()]
    h.handle(*events)
    before = h.requests()
    h.handle(*events)  # the outbox redelivers everything after a crash
    assert h.requests() == before


def test_a_lost_register_answer_is_absorbed_by_the_vendor_dedup(fake: FakeBitrix24) -> None:
    h = Harness(fake)
    fake.lose_answer_next(REGISTER)  # executed, but the answer never arrives
    with pytest.raises(RetryableDeliveryError):
        h.handle(ringing("101"))
    h.handle(ringing("101"), ended("101"))
    assert len(fake.calls_of(REGISTER)) == 2
    assert len(fake.registered("E1")) == 1  # the same EXTERNAL_CALL_ID got the first CALL_ID back
    assert len(call_of(h).finishes) == 1


def test_internal_calls_and_calls_without_a_number_never_reach_the_outbox(fake: FakeBitrix24) -> None:
    h = Harness(fake, popups=False, missed_task=False, attach_records=False)
    c = h.connector
    assert not c.wants(ringing("101", direction="internal", customer_number=None))
    assert not c.wants(ringing("101", customer_number=None))
    assert not c.wants(answered("101"))  # popups off: no show/hide
    assert not c.wants(missed_event("101"))
    assert not c.wants(record())
    assert not c.wants(ev("callback.requested"))
    assert c.wants(ringing("101")) and c.wants(ended("101"))


# ------------------------------------------------------------------ employees


def test_unmapped_extensions_are_skipped_by_default(fake: FakeBitrix24) -> None:
    h = Harness(fake, users={"101": "1"})
    h.handle(ringing("150"), ringing("101"), ended("101"))
    ((_, register),) = h.requests(REGISTER)
    assert register["USER_ID"] == "1"  # registered when a mapped employee rang
    h.handle(ringing("150", entry="E2"), ended("150", entry="E2"))
    assert fake.registered("E2") == []


def test_pass_phone_inner_lets_bitrix_find_the_user(fake: FakeBitrix24) -> None:
    h = Harness(fake, users={}, pass_phone_inner=True)
    h.handle(ringing("102"), ended("102"))
    ((_, register),) = h.requests(REGISTER)
    assert register["USER_PHONE_INNER"] == "102" and "USER_ID" not in register
    assert call_of(h).user_id == 7


def test_the_employee_map_is_imported_from_uf_phone_inner_page_by_page(fake: FakeBitrix24) -> None:
    fake.users = [
        {"ID": n, "NAME": f"U{n}", "ACTIVE": n % 10 != 0, "UF_PHONE_INNER": str(100 + n) if n % 7 else ""}
        for n in range(1, 131)
    ] + [{"ID": 500, "NAME": "Twin", "ACTIVE": True, "UF_PHONE_INNER": "101"}]
    h = Harness(fake, users={})
    report = h.connector.import_employees()
    assert report.users == 131 - 13
    assert report.mapped["101"] == "1" and report.duplicates == {"101": ["1", "500"]}
    assert "150" not in report.mapped  # user 50 is inactive
    assert len(report.mapped) == len([n for n in range(1, 131) if n % 10 and n % 7])
    gets = fake.calls_of("user.get")
    assert sorted(int(c.params.get("start", 0)) for c in gets)[:3] == [0, 50, 100]
    h.handle(ringing("102"))
    assert call_of(h).user_id == 2  # resolved through the imported map


def test_auto_import_happens_once_when_an_unknown_extension_rings(fake: FakeBitrix24) -> None:
    h = Harness(fake, users={}, auto_import=True)
    h.handle(ringing("102"), ringing("103"), ended("102"))
    assert len(fake.calls_of("user.get")) == 1
    assert [c.user_id for c in fake.registered("E1")] == [7]


# ------------------------------------------------------------------ records


def test_a_record_waits_for_finish_and_is_attached_once(fake: FakeBitrix24) -> None:
    h = Harness(fake)
    h.handle(ringing("101"))
    with pytest.raises(RetryableDeliveryError, match="waits until the call is finished"):
        h.handle(record())
    h.handle(answered("101"), ended("101"), record(), record(rid="second"))
    assert len(call_of(h).records) == 1  # Bitrix24 keeps one record per call


def test_a_record_url_bitrix_cannot_reach_is_a_permanent_error_in_plain_words(fake: FakeBitrix24) -> None:
    fake.block_private_record_urls = True
    h = Harness(fake, public_url="http://127.0.0.1:8080")
    h.handle(ringing("101"), ended("101"))
    with pytest.raises(PermanentDeliveryError, match="non-public address"):
        h.handle(record())


def test_without_a_public_url_records_are_skipped_and_check_says_so(fake: FakeBitrix24) -> None:
    h = Harness(fake, public_url=None)
    h.handle(ringing("101"), ended("101"), record())
    assert call_of(h).records == []
    assert "No http.public_url" in h.connector.check()


# ------------------------------------------------------------------ limits


def test_many_threads_through_the_connector_never_exceed_the_portal_limit() -> None:
    with FakeBitrix24(burst=8, rate=4.0) as fake:
        h = Harness(fake, burst=8, rate_per_second=4.0)
        errors: list[Exception] = []

        def call(n: int) -> None:
            try:
                h.handle(
                    ringing("101", entry=f"E{n}", customer_number=f"7916000{n:04d}"),
                    ended("101", entry=f"E{n}"),
                )
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(n,)) for n in range(24)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        assert fake.violations == 0
        assert len(fake.calls_of(FINISH)) == 24
        counted = len([r for r in fake.requests if r.counted])
        assert counted < 48  # commands of concurrent calls shared batch requests
        assert time.monotonic() - started >= (counted - 8 + 2) / 4.0 - 0.5  # no faster than the bucket allows


def test_the_fake_catches_a_client_that_sends_too_fast(fake: FakeBitrix24) -> None:
    import requests

    access, _ = fake.issue_tokens()
    answers = [
        requests.post(fake.url + "/rest/user.get", json={"auth": access}, timeout=5).status_code
        for _ in range(55)
    ]
    assert answers.count(503) >= 4 and fake.violations == answers.count(503)


def test_a_method_blocked_by_operation_time_limit_waits_while_the_others_go_on(fake: FakeBitrix24) -> None:
    h = Harness(fake)
    h.handle(ringing("101"))
    fake.block_method(FINISH, 60)
    with pytest.raises(MethodBlocked) as caught:
        h.handle(ended("101"))
    assert caught.value.retry_after is None
    h.handle(ringing("102", entry="E2"))  # register still works
    assert len(fake.registered("E2")) == 1
    with pytest.raises(MethodBlocked):
        h.handle(ended("101"))  # refused locally: nothing sent
    assert len(fake.calls_of(FINISH, ok=None)) == 1  # only the first one reached the portal


# ------------------------------------------------------------------ hooks: install and events


def test_install_stores_the_tokens_and_binds_click_to_call(fake: FakeBitrix24) -> None:
    h = Harness(fake, lines=["74951234567"])
    events = f"{PUBLIC}/connectors/bitrix24/events"
    assert fake.bound == {"ONEXTERNALCALLSTART": events, "ONAPPUNINSTALL": events}
    assert h.state.get(APP_TOKEN_KEY)[0] == fake.application_token
    assert h.state.get(TOKENS_KEY) is not None
    assert [line["NUMBER"] for line in fake.lines] == ["74951234567"]
    again = h.install()  # a second install (e.g. an update) keeps working: "already bound" is fine
    assert again.status_code == 200
    assert h.http.get("/connectors/bitrix24/").json["installed"] is True


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"domain": "evil.bitrix24.ru"}, 403, "another portal"),
        ({"access_token": "not-a-token-of-this-portal"}, 403, "not accepted"),
        ({"application_token": ""}, 400, "application_token"),
    ],
)
def test_a_forged_install_is_refused_and_stores_nothing(
    fake: FakeBitrix24, change: dict[str, str], status: int, words: str
) -> None:
    h = Harness(fake, install=False)
    answer = h.install(**change)
    assert answer.status_code == status and words in answer.json["error"]
    assert h.state.get(TOKENS_KEY) is None and h.state.get(APP_TOKEN_KEY) is None


def test_a_pinned_application_token_must_match(fake: FakeBitrix24) -> None:
    h = Harness(fake, install=False, application_token="f" * 32)
    assert h.install().status_code == 403


def test_events_need_the_stored_application_token(fake: FakeBitrix24) -> None:
    h = Harness(fake)
    form = {
        "event": "ONEXTERNALCALLSTART",
        "data[CALL_ID]": "x",
        "data[USER_ID]": "7",
        "data[PHONE_NUMBER]": CUSTOMER,
    }
    assert h.http.post("/connectors/bitrix24/events", data=form).status_code == 403
    wrong = {**form, "auth[application_token]": "0" * 32}
    assert h.http.post("/connectors/bitrix24/events", data=wrong).status_code == 403
    assert h.originated == []
    bad = {"event": "ONEXTERNALCALLSTART", "auth[application_token]": fake.application_token}
    answer = h.http.post("/connectors/bitrix24/events", data=bad)
    assert answer.status_code == 400 and "data[CALL_ID]" in answer.json["error"]


def test_click_to_call_originates_from_the_clicking_users_extension_and_finishes_that_call_id(
    fake: FakeBitrix24,
) -> None:
    h = Harness(fake)
    fake.bound["ONEXTERNALCALLSTART"] = "http://unused"  # the test client posts instead
    call = fake._new_call(7, "+79161234567", 1, None, None, by_bitrix=True)
    form = {
        "event": "ONEXTERNALCALLSTART",
        "data[PHONE_NUMBER]": "+79161234567",
        "data[PHONE_NUMBER_INTERNATIONAL]": "+79161234567",
        "data[USER_ID]": "7",
        "data[CALL_ID]": call.call_id,
        "auth[application_token]": fake.application_token,
    }
    answer = h.http.post("/connectors/bitrix24/events", data=form)
    assert answer.status_code == 200 and answer.json["command_id"] == "cb-1"
    assert h.originated == [("102", "+79161234567")]
    assert h.http.post("/connectors/bitrix24/events", data=form).json["duplicate"] is True
    c2c = dict(direction="outgoing", command_id="cb-1")
    h.handle(
        ringing("102", entry="C1", **c2c),
        answered("102", entry="C1", **c2c),
        ended("102", entry="C1", talk=33, **c2c),
    )
    assert h.requests(REGISTER, SHOW, HIDE) == []
    (finish,) = call.finishes
    assert (finish["USER"], finish["STATUS_CODE"], finish["DURATION"]) == (7, "200", 33)


def test_events_that_overtake_the_click_wait_for_its_command_id(fake: FakeBitrix24) -> None:
    h = Harness(fake)
    from connectors.bitrix24.clicks import Click

    h.connector.clicks.add(Click("externalCall.pending", "7", "102", "+79161234567", time.time()))
    with pytest.raises(RetryableDeliveryError, match="waiting for a click-to-call"):
        h.handle(ringing("102", entry="C1", direction="outgoing", command_id="cb-77"))
    h.connector.clicks.settle("externalCall.pending", command_id="cb-other")
    h.handle(ringing("102", entry="C1", direction="outgoing", command_id="cb-77"))  # not ours: a normal call
    assert len(fake.registered("C1")) == 1


@pytest.mark.parametrize(
    ("user", "error", "status", "code"),
    [("40", None, 409, "403"), ("7", RuntimeError("Mango said 3124"), 502, "OTHER")],
)
def test_a_click_that_cannot_be_dialled_closes_the_card_with_a_reason(
    fake: FakeBitrix24, user: str, error: Exception | None, status: int, code: str
) -> None:
    fake.users.append({"ID": 40, "NAME": "NoPhone", "ACTIVE": True, "UF_PHONE_INNER": ""})
    h = Harness(fake)
    h.originate_error = error
    call = fake._new_call(int(user), "+79161234567", 1, None, None, by_bitrix=True)
    form = {
        "event": "ONEXTERNALCALLSTART",
        "data[PHONE_NUMBER]": "+79161234567",
        "data[USER_ID]": user,
        "data[CALL_ID]": call.call_id,
        "auth[application_token]": fake.application_token,
    }
    answer = h.http.post("/connectors/bitrix24/events", data=form)
    assert answer.status_code == status
    (finish,) = call.finishes
    assert finish["STATUS_CODE"] == code and finish["FAILED_REASON"]


def test_uninstall_forgets_the_tokens_and_calls_wait_for_a_new_install(fake: FakeBitrix24) -> None:
    h = Harness(fake)
    form = {"event": "ONAPPUNINSTALL", "auth[application_token]": fake.application_token}
    assert h.http.post("/connectors/bitrix24/events", data=form).json["uninstalled"] is True
    with pytest.raises(NotAuthorised, match="not installed"):
        h.handle(ringing("101"))
    assert h.install().status_code == 200
    h.handle(ringing("101"))
    assert len(fake.registered("E1")) == 1


# ------------------------------------------------------------------ lookup


def test_lookup_gives_a_card_with_the_responsible_employee_and_caches_it(fake: FakeBitrix24) -> None:
    fake.add_crm("LEAD", "Lead from the site", "+7 916 123-45-67", assigned_by=9)
    contact = fake.add_crm("CONTACT", "Ivan Petrov", "8 (916) 123-45-67", assigned_by=7)
    h = Harness(fake)
    card = h.connector.lookup("+79161234567")
    assert card is not None and card.name == "Ivan Petrov"
    assert (
        card.responsible is not None
        and card.responsible.extension == "102"
        and card.responsible.crm_user_id == "7"
    )
    assert card.links == (("Bitrix24 contact", f"{fake.url}/crm/contact/details/{contact}/"),)
    assert h.connector.responsible_for("8 916 123 45 67").extension == "102"
    assert len(fake.calls_of("telephony.externalCall.searchCrmEntities")) == 1
    assert h.connector.lookup("+79990000000") is None


# ------------------------------------------------------------------ check and config


def test_check_reports_in_plain_words(fake: FakeBitrix24) -> None:
    h = Harness(fake, lines=["74951234567"])
    text = h.connector.check()
    assert f"Bitrix24 at {fake.host} answered the local application (token pair #1" in text
    assert "3 active users on the first page, 3 with an inner phone number" in text
    assert "External lines: 74951234567." in text
    assert "Employee map: 3 in the config" in text
    assert fake.client_secret not in text


def test_check_explains_what_is_missing(fake: FakeBitrix24) -> None:
    h = Harness(fake, install=False)
    with pytest.raises(
        NotAuthorised,
        match="not installed yet.*install path to https://calls.example.com/connectors/bitrix24/install",
    ):
        h.connector.check()
    hook = Harness(
        fake, install=False, auth="webhook", client_id=None, client_secret=None, webhook_url=fake.webhook_url
    )
    assert "register and finish work only for a local application" in hook.connector.check()
    bad = Harness(
        fake,
        install=False,
        auth="webhook",
        client_id=None,
        client_secret=None,
        webhook_url=fake.webhook_url.replace(fake.webhook_secret, "wrong"),
    )
    with pytest.raises(
        RetryableDeliveryError, match="INVALID_CREDENTIALS: the incoming webhook URL is wrong"
    ):
        bad.connector.check()


def test_register_through_a_webhook_is_refused_by_the_portal_in_plain_words(fake: FakeBitrix24) -> None:
    h = Harness(
        fake, install=False, auth="webhook", client_id=None, client_secret=None, webhook_url=fake.webhook_url
    )
    with pytest.raises(NotAuthorised, match="WRONG_AUTH_TYPE.*configure the local application"):
        h.handle(ringing("101"))


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"portal": "ftp://x"}, "should look like"),
        ({"portal": "http://example.bitrix24.ru"}, "must use https"),
        ({"portal": "example.bitrix24.ru", "client_id": "a"}, "go together"),
        ({"portal": "example.bitrix24.ru", "auth": "webhook"}, "needs webhook_url"),
        (
            {"portal": "example.bitrix24.ru", "webhook_url": "https://example.bitrix24.ru/rest/x/"},
            "rest/<user id>",
        ),
        ({"portal": "a.bitrix24.ru", "webhook_url": "https://b.bitrix24.ru/rest/1/abc/"}, "another portal"),
        ({"portal": "example.bitrix24.ru", "users": {"101": "anna"}}, "should be a number"),
        ({"portal": "example.bitrix24.ru", "unmapped": "default"}, "default_user"),
        ({"portal": "example.bitrix24.ru", "bogus": 1}, "Extra inputs"),
    ],
)
def test_config_errors_name_the_problem(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Bitrix24Config.model_validate(settings)


def test_config_from_the_environment_accepts_a_users_string() -> None:
    config = Bitrix24Config.model_validate(
        {"portal": "example.bitrix24.ru", "users": "101=1, 102=7", "lines": "1,2"}
    )
    assert config.users == {"101": "1", "102": "7"} and config.lines == ["1", "2"]
    assert config.portal == "https://example.bitrix24.ru" and config.auth_mode == "app"
    hook = Bitrix24Config.model_validate(
        {
            "portal": "example.bitrix24.ru",
            "webhook_url": "https://example.bitrix24.ru/rest/1/abc/user.get.json",
        }
    )
    assert (
        hook.auth_mode == "webhook"
        and hook.webhook_url.get_secret_value() == "https://example.bitrix24.ru/rest/1/abc/"
    )
    assert "abc" not in repr(hook)
