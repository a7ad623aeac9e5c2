"""Flask-WTF forms. Every POST in the panel also passes the blueprint-wide CSRF check."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, PasswordField, StringField, TextAreaField
from wtforms.validators import URL, AnyOf, DataRequired, Length, Optional


class LoginForm(FlaskForm):
    username = StringField("username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("password", validators=[DataRequired(), Length(max=1024)])


class TelephonyForm(FlaskForm):
    # Plain fields checked with AnyOf: the templates render the <select>s (WTForms 3.3 deprecates tuples).
    provider = StringField("provider", default="mango", validators=[AnyOf(["mango"])])
    api_url = StringField("api_url", validators=[Optional(), URL(require_tld=False), Length(max=500)])
    api_key = StringField("api_key", validators=[Optional(), Length(max=200)])
    # Never rendered back: empty on submit means "keep the saved salt".
    api_salt = PasswordField("api_salt", validators=[Optional(), Length(max=200)])
    verify_tls = BooleanField("verify_tls")
    ip_mode = StringField("ip_mode", default="open", validators=[AnyOf(["open", "list"])])
    allowed_ips = TextAreaField("allowed_ips", validators=[Optional(), Length(max=4000)])
    softphone = StringField("softphone", default="", validators=[Optional(), AnyOf(["callto", "sip"])])
    recordings = BooleanField("recordings")
    timezone = StringField("timezone", validators=[Optional(), Length(max=64)])
    frame_ancestors = StringField("frame_ancestors", validators=[Optional(), Length(max=1000)])


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class CallbackForm(FlaskForm):
    number = StringField("number", validators=[DataRequired(), Length(max=40)])
    extension = StringField("extension", validators=[Optional(), Length(max=16)])
    entry_id = HiddenField("entry_id")


class MappingForm(FlaskForm):
    extension = HiddenField("extension", validators=[DataRequired(), Length(max=32)])
    user_id = StringField("user_id", validators=[Optional(), Length(max=20)])


class LangForm(FlaskForm):
    lang = StringField("lang", validators=[AnyOf(["ru", "en"])])
