"""The shop connector's settings and mapping: what is accepted, and the words used for what is not."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from connectors.shop import ShopConfig, ShopConnector, ShopMapping, parse_ref, ready_mapping
from connectors.shop.config import Ref

URL = "mysql+pymysql://reader:s3cret-pass@db.example.com/shop"


def _config(**extra: Any) -> ShopConfig:
    return ShopConfig.model_validate({"database_url": URL, "mapping": "woocommerce", **extra})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("first_name", Ref("first_name", column="first_name")),
        ("st.name", Ref("st.name", column="name", alias="st")),
        ("meta:billing_phone", Ref("meta:billing_phone", meta_key="billing_phone")),
        (
            "meta:wp_capabilities|php:*",
            Ref("meta:wp_capabilities|php:*", meta_key="wp_capabilities", php_path=("*",)),
        ),
        (
            "address|php:billing/phone",
            Ref("address|php:billing/phone", column="address", php_path=("billing", "phone")),
        ),
        ("data|php:", Ref("data|php:", column="data", php_path=())),
    ],
)
def test_field_references_parse(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["", "a b", "1col", "x.y.z", "col; DROP TABLE x", "meta:", "a|php:x|y"])
def test_bad_field_references_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a field reference|meta key"):
        parse_ref(text)


def test_ready_mappings_build_with_prefix_and_schema() -> None:
    woo = ready_mapping("woocommerce", prefix="shop_", schema="public")
    assert woo.customers.table == "shop_users"
    assert woo.customers.details["roles"] == "meta:shop_capabilities|php:*"
    assert woo.db_schema == "public"
    assert ready_mapping("generic").orders is not None
    with pytest.raises(ValueError, match="no ready mapping"):
        ready_mapping("magento")


def test_a_custom_mapping_is_accepted_as_a_table() -> None:
    config = _config(
        mapping={
            "customers": {
                "table": "clients",
                "phones": ["tel", "extra|php:phone"],
                "name": ["fio"],
                "admin_url": "{base}/clients/{id}",
            }
        }
    )
    mapping = config.resolved_mapping()
    assert isinstance(mapping, ShopMapping)
    assert mapping.orders is None


@pytest.mark.parametrize(
    ("mapping", "words"),
    [
        ({"customers": {"table": "c", "phones": ["x.tel"]}}, "no join with the alias 'x'"),
        ({"customers": {"table": "c", "phones": ["meta:tel"]}}, "needs a meta table"),
        ({"customers": {"table": "c"}}, "names no phone field"),
        ({"customers": {"table": "c; drop", "phones": ["tel"]}}, "not a plain table or column name"),
        ({"customers": {"table": "c", "phones": ["tel"], "admin_url": "{base}/{user}"}}, "only {base}"),
        ({"customers": {"table": "c", "phones": ["tel"], "colour": 1}}, "Extra inputs are not permitted"),
        (
            {
                "customers": {"table": "c", "phones": ["tel"]},
                "orders": {"table": "o", "customer": "cid", "date": "d", "timezone": "Mars/Base"},
            },
            "unknown time zone",
        ),
    ],
)
def test_bad_mappings_are_refused_in_plain_words(mapping: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words.replace("(", r"\(").replace("{", r"\{")):
        _config(mapping=mapping)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("not a url", "should be a database URL"),
        ("oracle://u@h/db", "unsupported database 'oracle'"),
        ("sqlite://", "needs the database file's path"),
    ],
)
def test_bad_database_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        _config(database_url=url)


def test_unknown_ready_mapping_is_named() -> None:
    with pytest.raises(
        ValidationError, match='should be "woocommerce", "woocommerce_hpos", "generic" or a table'
    ) as caught:
        _config(mapping="magento")
    assert len(caught.value.errors()) == 1


def test_a_mapping_from_an_environment_variable_may_be_json() -> None:
    config = _config(mapping='{"customers": {"table": "clients", "phones": ["tel"]}}')
    assert config.resolved_mapping().customers.table == "clients"


def test_admin_base_url_must_be_http() -> None:
    assert _config(admin_base_url="https://shop.example.com/").admin_base_url == "https://shop.example.com"
    with pytest.raises(ValidationError, match="http"):
        _config(admin_base_url="javascript:alert(1)")


def test_the_password_never_shows() -> None:
    config = _config()
    assert "s3cret" not in repr(config)
    connector = ShopConnector(config)
    try:
        assert "s3cret" not in repr(connector)
        assert repr(connector) == "ShopConnector(mysql at db.example.com/shop)"
    finally:
        connector.close()


def test_the_connector_declares_lookup_only() -> None:
    assert ShopConnector.name == "shop"
    assert ShopConnector.capabilities == frozenset({"lookup"})
    assert ShopConnector.event_types == frozenset()
    assert ShopConnector.config_model is ShopConfig


def test_the_custom_mapping_example_in_the_docs_is_the_generic_mapping() -> None:
    import re
    import tomllib
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "connectors" / "shop.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    example = next(b for b in blocks if "[connectors.shop.mapping.customers]" in b)
    section = tomllib.loads(example)["connectors"]["shop"]
    config = ShopConfig.model_validate(section)
    assert config.resolved_mapping() == ready_mapping("generic")
    for block in blocks:  # every TOML example in the page is valid settings
        settings = tomllib.loads(block)["connectors"]["shop"]
        ShopConfig.model_validate(settings)


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://reader:s3cret-pass@127.0.0.1:1/shop",
        "postgresql+psycopg://reader:s3cret-pass@127.0.0.1:1/shop",
    ],
)
def test_an_unreachable_server_is_reported_without_the_password(url: str) -> None:
    from bridge.connector_api import PermanentDeliveryError
    from connectors.shop import ShopDatabaseError

    connector = ShopConnector({"database_url": url, "mapping": "generic", "timeout": 2})
    try:
        with pytest.raises(PermanentDeliveryError, match="cannot read the shop database") as caught:
            connector.check()
        assert "127.0.0.1:1/shop" in str(caught.value) and "s3cret" not in str(caught.value)
        with pytest.raises(ShopDatabaseError) as caught_lookup:
            connector.lookup("+79161234567")
        assert "s3cret" not in str(caught_lookup.value)
    finally:
        connector.close()
