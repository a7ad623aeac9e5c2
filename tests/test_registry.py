"""The connector registry: entry point discovery and config validation with errors a person can act on."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import bridge.registry as registry
from bridge.connector_api import Capability, Manifest, Title
from bridge.registry import ConnectorConfigError, available_connectors, build_connectors
from connectors.webhook import WebhookConnector

SECRET = "s3cret-s3cret-s3cret"
GOOD = {"url": "https://hooks.example.com/callbridge", "secret": SECRET}


def _fake_entry_points(monkeypatch, *pairs: tuple[str, str]) -> None:
    eps = [EntryPoint(name=name, value=value, group=registry.ENTRY_POINT_GROUP) for name, value in pairs]
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep for ep in eps if ep.group == group])


def test_installed_webhook_connector_is_found_by_entry_point():
    assert available_connectors()["webhook"] is WebhookConnector


def test_enabled_section_is_validated_and_built():
    built = build_connectors({"webhook": {**GOOD, "event_types": ["call.missed"], "rate_per_second": 5}})
    assert list(built) == ["webhook"]
    hook = built["webhook"]
    assert isinstance(hook, WebhookConnector)
    assert hook.url == "https://hooks.example.com/callbridge"
    assert hook.event_types == frozenset({"call.missed"})
    assert hook.rate_limit is not None and hook.rate_limit.rate == 5


@pytest.mark.parametrize("flag", [False, "false", "False", "0", "no", "off", 0])
def test_section_saying_enabled_false_is_skipped_without_validation(flag):
    assert build_connectors({"webhook": {"enabled": flag, "url": "not a url"}}) == {}


@pytest.mark.parametrize("flag", [True, "true", "1", "yes"])
def test_enabled_true_is_accepted_and_not_passed_to_the_model(flag):
    assert list(build_connectors({"webhook": {**GOOD, "enabled": flag}})) == ["webhook"]


def test_enabled_must_be_a_boolean():
    with pytest.raises(ConnectorConfigError, match=r"connectors\.webhook\.enabled: should be true or false"):
        build_connectors({"webhook": {**GOOD, "enabled": "maybe"}})


def test_bad_url_names_the_connector_and_the_key():
    with pytest.raises(ConnectorConfigError) as info:
        build_connectors({"webhook": {**GOOD, "url": "hooks.example.com"}})
    assert info.value.connector == "webhook"
    assert str(info.value).startswith("connectors.webhook.url: Input should be a valid URL")


def test_every_problem_is_listed_and_no_secret_is_echoed():
    with pytest.raises(ConnectorConfigError) as info:
        build_connectors({"webhook": {"url": "ftp://x", "secret": "tooshort-secret", "timeout": -1}})
    problems = info.value.problems
    assert "connectors.webhook.url: URL scheme should be 'http' or 'https'" in problems
    assert any(p.startswith("connectors.webhook.secret: should be at least 16 characters") for p in problems)
    assert any(p.startswith("connectors.webhook.timeout: Input should be greater than 0") for p in problems)
    assert "tooshort-secret" not in str(info.value)
    assert str(info.value).startswith("connector 'webhook' is misconfigured:\n")


def test_missing_and_misspelt_keys_are_reported():
    with pytest.raises(ConnectorConfigError) as info:
        build_connectors({"webhook": {"url": GOOD["url"], "secert": SECRET}})
    assert set(info.value.problems) == {
        "connectors.webhook.secret: Field required",
        "connectors.webhook.secert: Extra inputs are not permitted",
    }
    assert SECRET not in str(info.value)


def test_unknown_connector_lists_the_available_ones():
    with pytest.raises(ConnectorConfigError) as info:
        build_connectors({"bitrix": {"url": "https://x"}})
    message = str(info.value)
    assert "connectors.bitrix: no connector called 'bitrix' is installed" in message
    assert "(available: " in message and "webhook" in message


def test_disabled_unknown_section_is_ignored():
    assert build_connectors({"bitrix": {"enabled": False}}) == {}


def test_section_must_be_a_table():
    with pytest.raises(ConnectorConfigError, match="should be a table of settings"):
        build_connectors({"webhook": "https://x"})  # type: ignore[dict-item]


def test_a_broken_plugin_is_left_out_but_named_when_configured(monkeypatch, caplog):
    _fake_entry_points(
        monkeypatch,
        ("webhook", "connectors.webhook:WebhookConnector"),
        ("missing", "no_such_module_for_callbridge:Connector"),
        ("renamed", "connectors.webhook:WebhookConnector"),  # class says "webhook"
        ("notaconnector", "bridge.registry:ConnectorConfigError"),
    )
    assert list(available_connectors()) == ["webhook"]
    assert "connector 'missing' could not be loaded: ModuleNotFoundError" in caplog.text
    with pytest.raises(ConnectorConfigError, match="installed but failed to load .ModuleNotFoundError"):
        build_connectors({"missing": {}})
    with pytest.raises(ConnectorConfigError, match="the entry point says 'renamed'"):
        build_connectors({"renamed": GOOD})
    with pytest.raises(ConnectorConfigError, match="is not a Connector subclass"):
        build_connectors({"notaconnector": {}})
    assert list(build_connectors({"webhook": GOOD, "missing": {"enabled": False}})) == ["webhook"]


class _Liar(WebhookConnector):
    """Declares the employee import without implementing `EmployeeImporter`."""

    manifest = Manifest(
        name="liar",
        title=Title("Liar", "Лжец"),
        docs="docs/connectors/webhook.md",
        capabilities=frozenset({Capability.EMPLOYEE_IMPORT}),
    )


def test_a_manifest_that_disagrees_with_the_protocols_is_refused(monkeypatch, caplog):
    _fake_entry_points(monkeypatch, ("liar", f"{__name__}:_Liar"))
    assert available_connectors() == {}
    assert "declares import-employees but its import_employees disagrees" in caplog.text
    with pytest.raises(TypeError, match="declares import-employees"), registry.installed(_Liar):
        pass


def test_a_connector_installed_for_tests_is_built_like_an_entry_point_one():
    class Twin(WebhookConnector):
        manifest = Manifest(name="twin", title=Title("Twin", "Близнец"), docs="docs/connectors/webhook.md")

    with registry.installed(Twin):
        assert available_connectors()["twin"] is Twin and Twin.capabilities == frozenset()
        built = build_connectors({"twin": GOOD})["twin"]
        assert isinstance(built, Twin) and built.rate_limit is not None and built.name == "twin"
    assert "twin" not in available_connectors()
    with pytest.raises(ConnectorConfigError, match="no connector called 'twin'"):
        build_connectors({"twin": GOOD})


def test_limits_are_per_instance_and_leave_the_class_alone():
    slow = build_connectors({"webhook": {**GOOD, "rate_per_second": 2}})["webhook"]
    fast = build_connectors({"webhook": {**GOOD, "rate_per_second": 9, "event_types": ["call.ended"]}})[
        "webhook"
    ]
    assert slow.rate_limit is not None and slow.rate_limit.rate == 2 and slow.event_types is None
    assert fast.rate_limit is not None and fast.rate_limit.rate == 9 and fast.event_types == {"call.ended"}
    assert WebhookConnector.rate_limit is None and WebhookConnector.event_types is None
