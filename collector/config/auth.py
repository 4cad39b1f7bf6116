"""How the collector authenticates to Mimecast: API 2.0 client credentials or API 1.0 keys, each secret given
inline, as ``${ENV}`` or as a ``{key}_file`` (a systemd credential), never both."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag, model_validator
from pydantic.dataclasses import dataclass

from collector.config.base import MODEL, Section, type_tag
from collector.config.fields import Text, problem
from collector.config.places import SecretFile, SecretText
from collector.config.values import Secret

__all__ = ["HmacAuth", "OAuth2Auth", "auth_field"]

_SECRET_HELP = " Give it inline, as ${ENV}, or as {key}_file: a file name under $CREDENTIALS_DIRECTORY."


def _secret(key: str, what: str, example: str) -> Any:
    return Field(None, repr=False, description=what + _SECRET_HELP.replace("{key}", key), examples=[example])


def _secret_file(key: str) -> Any:
    return Field(None, repr=False, description=f"File holding {key} (instead of {key}).", examples=[key])


def _one_secret(auth: Section, key: str) -> tuple[str, str] | None:
    """Settle ``key`` from ``key`` or ``key_file``; a problem when both or neither are given."""
    inline, from_file = getattr(auth, key), getattr(auth, f"{key}_file")
    if inline is not None and from_file is not None:
        return key, f"give either {key} or {key}_file, not both"
    if inline is None and from_file is None:
        return key, f"is required (as {key}, {key}_file or ${{ENV}})"
    object.__setattr__(auth, key, inline or from_file)
    object.__setattr__(auth, f"{key}_file", None)
    return None


@dataclass(frozen=True, config=MODEL)
class OAuth2Auth(Section):
    """API 2.0 client credentials."""

    client_id: Text = Field(description="API 2.0 application client id.", examples=["${MIMECAST_CLIENT_ID}"])
    client_secret: Optional[SecretText] = _secret("client_secret", "API 2.0 client secret.", "${CLIENT_SECRET}")
    client_secret_file: Optional[SecretFile] = _secret_file("client_secret")
    type: Literal["oauth2"] = Field("oauth2", description="oauth2 (API 2.0) or hmac (API 1.0).",
                                    examples=["oauth2"])

    @model_validator(mode="after")
    def _settle(self) -> OAuth2Auth:
        found = _one_secret(self, "client_secret")
        if found:
            raise problem(found[1], found[0])
        return self


@dataclass(frozen=True, config=MODEL)
class HmacAuth(Section):
    """API 1.0 keys, signed per request with HMAC-SHA1."""

    app_id: Text = Field(description="API 1.0 application id.", examples=["your-application-id"])
    app_key: Optional[SecretText] = _secret("app_key", "API 1.0 application key.", "${MIMECAST_APP_KEY}")
    access_key: Optional[SecretText] = _secret("access_key", "API 1.0 access key.", "${MIMECAST_ACCESS_KEY}")
    secret_key: Optional[SecretText] = _secret("secret_key", "API 1.0 secret key (base64).", "${MIMECAST_SECRET_KEY}")
    app_key_file: Optional[SecretFile] = _secret_file("app_key")
    access_key_file: Optional[SecretFile] = _secret_file("access_key")
    secret_key_file: Optional[SecretFile] = _secret_file("secret_key")
    type: Literal["hmac"] = Field("hmac", description="oauth2 (API 2.0) or hmac (API 1.0).", examples=["hmac"])

    @model_validator(mode="after")
    def _settle(self) -> HmacAuth:
        found = [p for p in (_one_secret(self, k) for k in ("app_key", "access_key", "secret_key")) if p]
        if isinstance(self.secret_key, Secret) and not _is_base64(self.secret_key.reveal()):
            found.append(("secret_key", "is not valid base64 (copy the Secret Key exactly as Mimecast showed it)"))
        if found:
            raise problem(found[0][1], found[0][0], found[1:])
        return self


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _auth_shape(value: Any) -> Any:
    if isinstance(value, (OAuth2Auth, HmacAuth)):
        return value
    if not isinstance(value, dict):
        raise problem("expected a mapping with type: oauth2 or hmac")
    kind = value.get("type")
    if kind is None:
        raise problem("is required", "type")
    if kind not in ("oauth2", "hmac"):
        raise problem(f"{kind!r} is not one of: oauth2, hmac", "type")
    return value


def auth_field() -> Any:
    """The annotated type of ``mimecast.auth``."""
    return Annotated[Union[Annotated[OAuth2Auth, Tag("oauth2")], Annotated[HmacAuth, Tag("hmac")]],
                     Discriminator(type_tag), BeforeValidator(_auth_shape)]
