"""A rate limit per ingestion key (api.throttling): requests per period, empty for the setting's default."""

from django.db import migrations, models

import config.rates


class Migration(migrations.Migration):
    dependencies = [
        ("adaptive", "0006_api_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="ingestionkey",
            name="rate",
            field=models.CharField(
                blank=True,
                default="",
                help_text='Requests per period, e.g. "1000/min" or "50/10s"; empty: the INGESTION_KEY_RATE setting.',
                max_length=32,
                validators=[config.rates.validate_rate],
            ),
        ),
    ]
