"""A connector's settings form, built from its pydantic `config_model`.

Each model field becomes one input: text for strings (URLs, numbers too: pydantic converts them), a
checkbox for booleans, a select for `Literal`/`Enum`, a textarea with one item per line for lists of plain
values, a password box for `SecretStr`, and a JSON textarea for anything richer (nested models, dicts,
unions). Titles come from the connector manifest's `settings` in the user's language (else the model's
`Field(title=...)`), help from `Field(description=...)`. The form holds no rules of its own: the
submitted values are validated by the model, and its messages are shown per field.

Secrets are never rendered back: an empty secret box keeps the saved value. Keys fixed by the config file
or the environment (`connectors.<name>.<key>`) are shown locked and refused.
"""

from __future__ import annotations

import enum
import json
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from werkzeug.datastructures import MultiDict
from wtforms import BooleanField, Field, PasswordField, StringField, TextAreaField
from wtforms.form import BaseForm

from bridge.connector_api import Title

ENABLED = "enabled"
CLEAR_PREFIX = "clear-"  # a checkbox "remove the saved secret", named clear-<key>
_SCALARS = (str, int, float)


@dataclass(frozen=True)
class FieldSpec:
    """One option of a connector's config model, as the form shows it."""

    key: str  # the section key (the field's alias when it has one)
    kind: str  # text | bool | choice | list | secret | json
    title: str
    description: str
    required: bool
    nullable: bool
    choices: tuple[str, ...] = ()
    default: Any = None


@dataclass
class Submission:
    """What a POST asks for: `updates` (key -> value; None drops the saved value), the section they give."""

    section: dict[str, Any]
    updates: dict[str, Any]
    enabled: bool
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _strip_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _split_optional(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    annotation = _strip_annotated(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        members = [_strip_annotated(a) for a in get_args(annotation) if a is not type(None)]
        nullable = len(members) < len(get_args(annotation))
        if len(members) == 1:
            return members[0], nullable
        return Union[tuple(members)], nullable  # noqa: UP007 - rebuilt from a runtime tuple
    return annotation, False


def _kind(annotation: Any) -> tuple[str, tuple[str, ...]]:
    origin = get_origin(annotation)
    if annotation is bool:
        return "bool", ()
    if origin is Literal and all(isinstance(v, str) for v in get_args(annotation)):
        return "choice", tuple(get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "choice", tuple(str(member.value) for member in annotation)
    if annotation is SecretStr:
        return "secret", ()
    if origin in (list, tuple, set, frozenset):
        items = [_strip_annotated(a) for a in get_args(annotation) if a is not Ellipsis]
        if len(items) == 1 and items[0] in _SCALARS:
            return "list", ()
        return "json", ()
    if origin is not None or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "json", ()  # dicts, unions, nested models
    return "text", ()  # str, int, float, URLs and other types pydantic builds from a string


def _spec(name: str, info: FieldInfo, title: str | None = None) -> FieldSpec:
    annotation, nullable = _split_optional(info.annotation)
    kind, choices = _kind(annotation)
    key = info.alias or name
    default = None if info.default is PydanticUndefined else info.default
    if isinstance(default, enum.Enum):
        default = default.value
    return FieldSpec(
        key=key,
        kind=kind,
        title=title or info.title or key.replace("_", " ").capitalize(),
        description=info.description or "",
        required=info.is_required(),
        nullable=nullable,
        choices=choices,
        default=default,
    )


def field_specs(
    model: type[BaseModel], lang: str = "en", titles: Mapping[str, Title] | None = None
) -> list[FieldSpec]:
    """One spec per field of `model`, in declaration order, titled in `lang` ("ru" or "en") from
    `titles` (a manifest's `settings`, by key) where it has the key."""
    titles = titles or {}
    specs = []
    for name, info in model.model_fields.items():
        title = titles.get(info.alias or name)
        specs.append(_spec(name, info, title(lang) if title is not None else None))
    return specs


# ---------------------------------------------------------------------------------------------- the form


def _display(spec: FieldSpec, value: Any) -> Any:
    """A section value as the input shows it."""
    if value is None:
        return None
    if spec.kind == "list":
        if isinstance(value, str):
            return value
        return "\n".join(str(item) for item in value)
    if spec.kind == "json":
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, default=str)
    if spec.kind == "bool":
        return _truthy(value)
    return str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "on", "y"}
    return bool(value)


def _unbound(spec: FieldSpec) -> Any:
    label, help_text = spec.title, spec.description
    if spec.kind == "bool":
        return BooleanField(label, description=help_text)
    if spec.kind == "choice":
        # The template renders the <select> from spec.choices (WTForms 3.3 deprecates tuple choices);
        # the model checks the value.
        return StringField(label, description=help_text)
    if spec.kind == "secret":
        return PasswordField(label, description=help_text)
    if spec.kind in ("list", "json"):
        return TextAreaField(label, description=help_text)
    return StringField(label, description=help_text)


def build_form(
    specs: Iterable[FieldSpec],
    section: Mapping[str, Any],
    *,
    enabled: bool,
    formdata: MultiDict[str, str] | None = None,
) -> BaseForm:
    """The WTForms form: `formdata` when re-showing a submission, else the current `section` (no secrets)."""
    specs = list(specs)
    form = BaseForm([(ENABLED, BooleanField(ENABLED))] + [(spec.key, _unbound(spec)) for spec in specs])
    data: dict[str, Any] = {ENABLED: enabled}
    for spec in specs:
        if spec.kind == "secret":
            continue
        value = section.get(spec.key)
        if value is None and spec.kind in ("bool", "choice"):
            value = spec.default
        data[spec.key] = _display(spec, value)
    form.process(formdata=formdata if formdata else None, data=data)
    for spec in specs:  # what a secret box shows is never the secret
        if spec.kind == "secret":
            form[spec.key].data = ""
    return form


# --------------------------------------------------------------------------------------------- a submission


def _parse(spec: FieldSpec, raw: str) -> Any:
    """A submitted string as the section value to validate; None = not set (use the default)."""
    text = raw.strip()
    if spec.kind == "list":
        items = [line.strip() for line in text.replace("\r", "").split("\n")]
        items = [item for item in items if item]
        return items or None
    if spec.kind == "json":
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text  # e.g. a ready mapping's name typed without quotes; the model decides
    if spec.kind == "secret":
        return raw if raw != "" else None
    return text if text != "" else None


def read_submission(
    specs: Iterable[FieldSpec],
    formdata: MultiDict[str, str],
    current: Mapping[str, Any],
    *,
    fixed: frozenset[str],
    enabled_now: bool,
) -> Submission:
    """The updates a POST asks for, and the section they give on top of `current`.

    `fixed` holds the option keys (and "enabled") set by the config file or the environment: a submission
    that sends one is refused (a browser does not send locked inputs). An empty secret keeps the saved one,
    unless its clear-<key> box is ticked.
    """
    section = dict(current)
    updates: dict[str, Any] = {}
    refused = [key for key in [ENABLED, *(s.key for s in specs)] if key in fixed and key in formdata]
    if ENABLED in fixed:
        enabled = enabled_now
    else:
        enabled = _truthy(formdata.get(ENABLED, ""))
        updates[ENABLED] = enabled
        section[ENABLED] = enabled
    for spec in specs:
        if spec.key in fixed:
            continue
        if spec.kind == "bool":
            value: Any = spec.key in formdata and _truthy(formdata.get(spec.key, ""))
        else:
            value = _parse(spec, formdata.get(spec.key, ""))
        clear = _truthy(formdata.get(CLEAR_PREFIX + spec.key, ""))
        if spec.kind == "secret" and value is None and not clear:
            continue  # keep the saved secret
        updates[spec.key] = value
        if value is None:
            section.pop(spec.key, None)
        else:
            section[spec.key] = value
    return Submission(section=section, updates=updates, enabled=enabled, refused=refused)


def validate(model: type[BaseModel], submission: Submission) -> BaseModel | None:
    """Validate the submission's section with the model; per-field messages go into `submission.errors`.

    Text inputs are stored as the model read them (numbers as numbers); the rest as submitted.
    """
    options = {k: v for k, v in submission.section.items() if k != ENABLED}
    try:
        config = model.model_validate(options)
    except ValidationError as exc:
        keys = {spec.key for spec in field_specs(model)}
        # include_input=False: the rejected value may be a secret.
        for err in exc.errors(include_url=False, include_input=False, include_context=False):
            message = err["msg"].removeprefix("Value error, ")
            loc = [str(part) for part in err["loc"]]
            if loc and loc[0] in keys:
                where = ".".join(loc[1:])
                submission.errors.setdefault(loc[0], []).append(f"{where}: {message}" if where else message)
            else:
                submission.general.append(f"{'.'.join(loc)}: {message}" if loc else message)
        return None
    dumped = config.model_dump(mode="json", by_alias=True)
    for spec in field_specs(model):
        value = submission.updates.get(spec.key)
        if value is not None and spec.kind == "text" and spec.key in dumped:
            submission.updates[spec.key] = dumped[spec.key]
    return config


def secret_state(specs: Iterable[FieldSpec], section: Mapping[str, Any]) -> dict[str, bool]:
    """For each secret option, whether a value is set (shown as "saved", never the value)."""
    return {spec.key: bool(section.get(spec.key)) for spec in specs if spec.kind == "secret"}


def form_fields(form: BaseForm, specs: Iterable[FieldSpec]) -> list[tuple[FieldSpec, Field]]:
    """(spec, bound field) pairs in the model's order, for the template."""
    return [(spec, form[spec.key]) for spec in specs]
