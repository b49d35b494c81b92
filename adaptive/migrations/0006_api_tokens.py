"""Users' API tokens stored hashed (adaptive.models.ApiToken), with expiry and revocation.

Tokens of Django REST framework's ``authtoken`` app (plain text in ``authtoken_token``) become
hashed ApiTokens that keep working with the same raw value; the plain-text table is then dropped
and the app's migration records removed (the app is no longer installed, so nothing could read
it; installing it again starts from an empty table). Raw SQL: the app is not in INSTALLED_APPS.
The hashing and prefix rule are those of adaptive.services.tokens, copied so that this migration
does not change if the service does.
"""

import hashlib
from datetime import UTC

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models
from django.utils.dateparse import parse_datetime

LEGACY_TABLE = "authtoken_token"
PREFIX_LEN = 10


def convert_plain_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("adaptive", "ApiToken")
    table = schema_editor.quote_name(LEGACY_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {schema_editor.quote_name('key')}, user_id, created FROM {table}")
        rows = cursor.fetchall()
    tokens = []
    for raw, user_id, created in rows:
        if isinstance(created, str):
            created = parse_datetime(created)
        if created is not None and created.tzinfo is None:  # SQLite stores UTC without an offset
            created = created.replace(tzinfo=UTC)
        tokens.append(
            ApiToken(
                user_id=user_id,
                name="migrated token",
                prefix=raw[:PREFIX_LEN],
                key_hash=hashlib.sha256(raw.encode()).hexdigest(),
                **({"created_at": created} if created is not None else {}),
            )
        )
    ApiToken.objects.bulk_create(tokens)
    schema_editor.execute(f"DROP TABLE {table}")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = %s", ["authtoken"])


class Migration(migrations.Migration):
    dependencies = [
        ("adaptive", "0005_event_received_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditentry",
            name="action",
            field=models.CharField(
                choices=[
                    ("create_deployment", "Create deployment"),
                    ("update_settings", "Update settings"),
                    ("upload_version", "Upload version"),
                    ("promote", "Promote"),
                    ("rollback", "Roll back"),
                    ("retrain", "Retrain requested"),
                    ("pause", "Pause adaptation"),
                    ("resume", "Resume adaptation"),
                    ("reset_memory", "Reset memory"),
                    ("create_key", "Create ingestion key"),
                    ("revoke_key", "Revoke ingestion key"),
                    ("create_token", "Create API token"),
                    ("revoke_token", "Revoke API token"),
                ],
                max_length=32,
            ),
        ),
        migrations.CreateModel(
            name="ApiToken",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("prefix", models.CharField(max_length=12)),
                ("key_hash", models.CharField(max_length=64)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("expires_at", models.DateTimeField(blank=True, null=True)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                ("last_used_at", models.DateTimeField(blank=True, null=True)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="api_tokens",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["user", "-created_at"],
                "indexes": [models.Index(fields=["prefix"], name="api_token_prefix")],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("expires_at__isnull", True), ("expires_at__gt", models.F("created_at")), _connector="OR"
                        ),
                        name="api_token_expires_after_creation",
                    )
                ],
            },
        ),
        # No way back: the plain-text tokens are gone for good (the hashed ones stay valid).
        migrations.RunPython(convert_plain_tokens, migrations.RunPython.noop),
    ]
