"""A text field stored encrypted (accounts.crypto); Python code sees plain text.

A secret that no key of FIELD_ENCRYPTION_KEY decrypts does not stop its row
from loading (for a list, a check, the status page): it stays sealed, and only
the code that really reads the secret meets ``UndecryptableSecret``. An
instance saved without a new value writes that ciphertext back unchanged, so
nothing is lost while the right key is being found.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.query_utils import DeferredAttribute

from accounts import crypto


class _DecryptOnRead(DeferredAttribute):
    """A data descriptor (it has __set__), so every read goes through __get__."""

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        value = super().__get__(instance, cls)
        if instance is not None and isinstance(value, crypto.Sealed):
            value = crypto.decrypt(value)  # UndecryptableSecret goes up to the reader
            instance.__dict__[self.field.attname] = value
        return value


class EncryptedTextField(models.TextField):
    """Plain text in Python, Fernet ciphertext in the database.

    Not searchable or orderable by value, by design.
    """

    descriptor_class = _DecryptOnRead

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        if not value:
            return ""
        try:
            return crypto.decrypt(value)
        except crypto.UndecryptableSecret:
            # Kept sealed: raised to whoever reads the attribute, not to whoever loads the row.
            return crypto.Sealed(value)

    def get_prep_value(self, value: Any) -> str:
        if isinstance(value, crypto.Sealed):
            return str(value)  # never read: stored as it came
        value = super().get_prep_value(value)
        if value is None:
            return ""
        return crypto.encrypt(str(value))

    def pre_save(self, model_instance: Any, add: bool) -> Any:
        return stored_value(model_instance, self.attname)  # sealed: written back unread

    def value_from_object(self, obj: Any) -> Any:
        """For forms and serializers: the secret, or '' when no key decrypts it."""
        return secret_or_empty(obj, self.attname)

    def formfield(self, **kwargs: Any) -> Any:  # type: ignore[override]
        from accounts.forms import SecretInput

        kwargs.setdefault("widget", SecretInput)
        return super().formfield(**kwargs)


def stored_value(instance: Any, name: str) -> str:
    """The secret if it can be read, else what is stored (a crypto.Sealed), never raising."""
    try:
        return getattr(instance, name) or ""
    except crypto.UndecryptableSecret:
        return instance.__dict__[name]  # type: ignore[no-any-return]


def secret_or_empty(instance: Any, name: str) -> str:
    value = stored_value(instance, name)
    return "" if isinstance(value, crypto.Sealed) else value


def is_undecryptable(instance: Any, name: str) -> bool:
    return isinstance(stored_value(instance, name), crypto.Sealed)


class SecretsModel(models.Model):
    """A model with EncryptedTextFields: validating it never needs the key.

    A secret that no key decrypts stays sealed through a form's save (an empty
    secret box keeps what is stored), so it is left out of field validation,
    which would otherwise read, and so decrypt, every field.
    """

    class Meta:
        abstract = True

    def clean_fields(self, exclude: Any = None) -> None:
        sealed = {
            f.name
            for f in self._meta.concrete_fields
            if isinstance(f, EncryptedTextField)
            and isinstance(self.__dict__.get(f.attname), crypto.Sealed)
        }
        super().clean_fields(exclude={*(exclude or ()), *sealed})
