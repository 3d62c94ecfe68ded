import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("connector", "0010_milestone_first_feed"),
    ]

    operations = [
        migrations.CreateModel(
            name="GraphDeltaState",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "mailbox",
                    models.CharField(
                        help_text="SMTP address of the room, lower case", max_length=500
                    ),
                ),
                ("window_start", models.DateTimeField()),
                ("window_end", models.DateTimeField()),
                (
                    "reader",
                    models.CharField(
                        help_text="Who read it: the base URI and app registration", max_length=600
                    ),
                ),
                ("delta_link", models.TextField()),
                ("with_bodies", models.BooleanField(default=False)),
                ("events", models.BinaryField(help_text="zlib-compressed JSON: item id -> event")),
                ("event_count", models.IntegerField(default=0)),
                ("seeded", models.DateTimeField(help_text="When the round started from scratch")),
                ("updated", models.DateTimeField(help_text="When a refresh last used it")),
                (
                    "server",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="graph_deltas",
                        to="connector.server",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("server", "mailbox", "window_start", "window_end"),
                        name="graph_delta_once_per_window",
                    )
                ],
            },
        ),
    ]
