"""The retailCRM client with `responses`: the key header, form bodies with JSON strings, and how each kind
of answer is classified (retailcrm.md §3.1)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
import requests
import responses

from bridge.connector_api import PermanentDeliveryError, RetryableDeliveryError
from connectors.retailcrm.client import (
    RetailCrmAuthError,
    RetailCrmClient,
    RetailCrmPermanentError,
    RetailCrmRateLimited,
    RetailCrmRetryableError,
    form,
)

URL = "https://shop.retailcrm.ru"
KEY = "client-test-key-" + "9" * 24


@pytest.fixture
def client() -> RetailCrmClient:
    return RetailCrmClient(URL, KEY, rate=1000)


def test_form_bodies_carry_objects_as_json_strings() -> None:
    assert form({"event": {"type": "in", "codes": ["101"]}, "by": "id", "flag": True, "none": None}) == {
        "event": '{"type":"in","codes":["101"]}',
        "by": "id",
        "flag": "1",
    }


@responses.activate
def test_a_post_sends_the_key_and_a_form(client: RetailCrmClient) -> None:
    responses.post(f"{URL}/api/v5/telephony/call/event", json={"success": True})
    assert client.post("/telephony/call/event", {"event": {"phone": "+79161234567", "type": "in"}}) == {
        "success": True
    }
    sent = responses.calls[0].request
    assert sent.headers["X-API-KEY"] == KEY
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    body = parse_qs(sent.body if isinstance(sent.body, str) else sent.body.decode())
    assert json.loads(body["event"][0]) == {"phone": "+79161234567", "type": "in"}


@responses.activate
def test_a_get_sends_its_parameters_and_unversioned_paths_stay_unversioned(client: RetailCrmClient) -> None:
    responses.get(f"{URL}/api/v5/telephony/manager", json={"success": True})
    responses.get(f"{URL}/api/credentials", json={"success": True, "credentials": []})
    client.get("/telephony/manager", {"phone": "+79161234567", "details": 1})
    client.get("/api/credentials")
    assert "phone=%2B79161234567&details=1" in responses.calls[0].request.url
    assert responses.calls[1].request.url == f"{URL}/api/credentials"


@responses.activate
def test_503_is_a_rate_limit_that_pauses_the_client(client: RetailCrmClient) -> None:
    responses.post(f"{URL}/api/v5/tasks/create", status=503, headers={"Retry-After": "3"}, body="")
    with pytest.raises(RetailCrmRateLimited) as caught:
        client.post("/tasks/create", {"task": {}})
    assert isinstance(caught.value, RetryableDeliveryError) and caught.value.retry_after == 3
    assert client.bucket.try_acquire() > 2.5


@responses.activate
def test_a_refused_key_is_retryable_slowly_and_names_no_key(client: RetailCrmClient) -> None:
    responses.get(
        f"{URL}/api/v5/users", status=403, json={"success": False, "errorMsg": 'Wrong "apiKey" value.'}
    )
    with pytest.raises(RetailCrmAuthError) as caught:
        client.get("/users")
    assert caught.value.retry_after == 60 and "Wrong" in str(caught.value) and KEY not in str(caught.value)


@responses.activate
def test_errors_of_the_payload_are_permanent_with_retailcrms_words(client: RetailCrmClient) -> None:
    responses.post(
        f"{URL}/api/v5/telephony/calls/upload",
        status=400,
        json={
            "success": False,
            "errorMsg": "Errors in the entity format",
            "errors": {"result": "Invalid value."},
        },
    )
    with pytest.raises(RetailCrmPermanentError) as caught:
        client.post("/telephony/calls/upload", {"calls": [{}]})
    assert isinstance(caught.value, PermanentDeliveryError)
    assert str(caught.value).endswith("HTTP 400 Errors in the entity format; result: Invalid value.")
    assert caught.value.errors == {"result": "Invalid value."}


@responses.activate
def test_success_false_with_200_is_permanent(client: RetailCrmClient) -> None:
    responses.post(f"{URL}/api/v5/tasks/create", json={"success": False, "errorMsg": "Task is not valid"})
    with pytest.raises(RetailCrmPermanentError, match="Task is not valid"):
        client.post("/tasks/create", {"task": {}})


@responses.activate
def test_5xx_a_body_that_is_not_json_and_the_network_are_retryable(client: RetailCrmClient) -> None:
    responses.post(f"{URL}/api/v5/tasks/create", status=502, body="bad gateway")
    responses.post(f"{URL}/api/v5/tasks/create", status=200, body="<html>")
    responses.post(f"{URL}/api/v5/tasks/create", body=requests.ConnectionError("connection refused"))
    for _ in range(3):
        with pytest.raises(RetailCrmRetryableError):
            client.post("/tasks/create", {"task": {}})


@responses.activate
def test_a_redirect_is_not_followed(client: RetailCrmClient) -> None:
    responses.get(f"{URL}/api/v5/users", status=301, headers={"Location": "https://elsewhere.example"})
    with pytest.raises(RetailCrmPermanentError, match="redirect"):
        client.get("/users")
    assert len(responses.calls) == 1
