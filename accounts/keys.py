"""Every encrypted secret of the installation: which cannot be read, and key rotation.

``FIELD_ENCRYPTION_KEY`` holds one or more Fernet keys; the first encrypts,
all decrypt. Rotating means putting the new key first (``new,old``), running
``manage.py rotate_keys`` (every secret re-encrypted with the new key), then
dropping the old key. A secret that no key decrypts is reported here, by
model, row and field, never raised: checks, /healthz and the admin say which
one to enter again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.db.models.functions import Cast

from accounts import crypto
from accounts.fields import EncryptedTextField


@dataclass(frozen=True)
class SecretProblem:
    model: str  # verbose name: "service account", "app registration", "calendar" ...
    name: str  # the row, as the admin names it
    field: str  # the field's verbose name: "password", "client secret" ...

    def describe(self) -> str:
        return f"the {self.field} of {self.model} {self.name}"


@dataclass
class Rotation:
    rotated: int = 0  # secrets re-encrypted with the first key
    unreadable: list[SecretProblem] = field(default_factory=list)


def _encrypted_fields() -> list[tuple[type[models.Model], list[EncryptedTextField]]]:
    found = []
    for model in apps.get_models():
        fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if fields:
            found.append((model, fields))
    return found


def _raw_rows(model: type[models.Model], fields: list[EncryptedTextField]) -> list[dict[str, Any]]:
    """Each row's primary key and stored ciphertexts, as stored (nothing is decrypted).

    A plain TextField cast skips the field's own decryption on the way out.
    """
    raw = {f"raw_{f.attname}": Cast(f.attname, output_field=models.TextField()) for f in fields}
    rows = model._default_manager.annotate(**raw).values("pk", *raw)
    return [
        {"pk": row["pk"], **{f.attname: row[f"raw_{f.attname}"] or "" for f in fields}}
        for row in rows
    ]


def _problem(model: type[models.Model], pk: object, field: EncryptedTextField) -> SecretProblem:
    row = model._default_manager.filter(pk=pk).first()
    return SecretProblem(
        model=str(model._meta.verbose_name), name=str(row), field=str(field.verbose_name)
    )


def undecryptable_secrets() -> list[SecretProblem]:
    """The stored secrets that no key of FIELD_ENCRYPTION_KEY decrypts."""
    problems = []
    for model, fields in _encrypted_fields():
        for row in _raw_rows(model, fields):
            for f in fields:
                stored = row[f.attname]
                if stored and not crypto.readable(stored):
                    problems.append(_problem(model, row["pk"], f))
    return problems


def rotate_keys() -> Rotation:
    """Re-encrypt every readable secret with the first key; report the unreadable ones."""
    rotation = Rotation()
    for model, fields in _encrypted_fields():
        for row in _raw_rows(model, fields):
            changes: dict[str, crypto.Sealed] = {}
            for f in fields:
                stored = row[f.attname]
                if not stored:
                    continue
                try:
                    changes[f.attname] = crypto.Sealed(crypto.rotate(stored))
                except crypto.UndecryptableSecret:
                    rotation.unreadable.append(_problem(model, row["pk"], f))
            if changes:
                with transaction.atomic():
                    # A queryset update: no save() signals, no change of ``updated``.
                    model._default_manager.filter(pk=row["pk"]).update(**changes)
                rotation.rotated += len(changes)
    return rotation
