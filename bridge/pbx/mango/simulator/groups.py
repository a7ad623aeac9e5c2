"""The `groups` query (PDF §3.7.2 "Получить список групп"): the PBX's ring groups in Mango's shape.

Filters, all optional: `group_id` (that group only), `operator_id` (a user's `general.user_id`) and
`operator_extension` (a user's extension) keep the groups the employee is in; `show_users` 1 adds the
`operators` list. Filters combine (every one given must match); a filter that matches nothing gives an
empty list. A filter of the wrong shape (an object or a list) is 3104; a value that cannot be what it names
(a group or user id that is not a whole number, an extension that is not digits, `show_users` other than
0 or 1) is 3100.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

OK = 1000
BAD_PARAMS = 3100
BAD_FORMAT = 3104
GROUP_ID_BASE = 10050000  # Mango's group ids are numbers of their own, not the short number
DIAL_ALG_PARALLEL = 2  # ALG_PARALLEL: all free operators at once, as the simulator rings them
DIAL_ALG_USERS_ALL = 1  # ALG_M_ALL: every contact of the operator at once
LINE_ID = 400000101


class GroupsQueryError(ValueError):
    """A filter Mango would refuse; `code` is the result code to answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def group_id(short_number: str, index: int) -> int:
    """The id of the group with `short_number` (the `index`-th configured one)."""
    return GROUP_ID_BASE + int(short_number) if short_number.isdigit() else GROUP_ID_BASE + 90000 + index


def _present(payload: Mapping[str, Any], name: str) -> Any:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, Mapping | list):
        raise GroupsQueryError(BAD_FORMAT, f"{name} must be a single value")
    return value


def _whole(payload: Mapping[str, Any], name: str) -> int | None:
    value = _present(payload, name)
    if value is None:
        return None
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise GroupsQueryError(BAD_PARAMS, f"{name} must be a whole number, got {value!r}")
    return int(str(value).strip())


def _filters(payload: Mapping[str, Any]) -> tuple[int | None, int | None, str | None, bool]:
    wanted_group = _whole(payload, "group_id")
    operator_id = _whole(payload, "operator_id")
    extension = _present(payload, "operator_extension")
    if extension is not None and (isinstance(extension, bool) or not str(extension).isdigit()):
        raise GroupsQueryError(BAD_PARAMS, f"operator_extension must be digits, got {extension!r}")
    show = _present(payload, "show_users")
    if show is not None and (isinstance(show, bool) or str(show) not in ("0", "1")):
        raise GroupsQueryError(BAD_PARAMS, f"show_users must be 0 or 1, got {show!r}")
    return wanted_group, operator_id, None if extension is None else str(extension), str(show) == "1"


def _user_index(users: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    index = {}
    for user in users:
        telephony = user.get("telephony")
        if isinstance(telephony, Mapping) and telephony.get("extension"):
            index[str(telephony["extension"])] = user
    return index


def _general(user: Mapping[str, Any] | None, key: str) -> Any:
    general = user.get("general") if user else None
    return general.get(key) if isinstance(general, Mapping) else None


def answer(
    groups: Mapping[str, Sequence[str]], users: Sequence[Mapping[str, Any]], payload: Mapping[str, Any]
) -> dict[str, Any]:
    """The reply to `groups` with `payload`, for `groups` (short number -> operators' extensions in
    order) and `users` (the `config/users/request` list). Raises GroupsQueryError for a bad filter."""
    wanted_group, operator_id, extension, show_users = _filters(payload)
    by_extension = _user_index(users)
    found = []
    for index, (short, operators) in enumerate(groups.items()):
        gid = group_id(short, index)
        members = [str(e) for e in operators]
        if wanted_group is not None and gid != wanted_group:
            continue
        if extension is not None and extension not in members:
            continue
        if operator_id is not None and operator_id not in {
            _general(by_extension.get(e), "user_id") for e in members
        }:
            continue
        group: dict[str, Any] = {
            "id": gid,
            "name": f"Группа {short}",
            "description": "",
            "extension": short,
            "dial_alg_group": DIAL_ALG_PARALLEL,
            "dial_alg_users": DIAL_ALG_USERS_ALL,
            "auto_redirect": 0,
            "auto_dial": 0,
            "line_id": LINE_ID,
            "use_dynamic_ivr": 0,
            "use_dynamic_seq_num": 0,
            "melody_id": None,
        }
        if show_users:
            group["operators"] = [
                {
                    "id": _general(by_extension.get(ext), "user_id"),
                    "name": _general(by_extension.get(ext), "name"),
                    "extension": ext,
                    "priority": 1,
                    "order": position,
                }
                for position, ext in enumerate(members, start=1)
            ]
        found.append(group)
    return {"result": OK, "groups": found}
