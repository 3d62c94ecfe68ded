from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("connector", "0005_feed_key_rule"),
    ]

    operations = [
        migrations.CreateModel(
            name="RefusedHost",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=255, unique=True)),
                ("first_seen", models.DateTimeField()),
                ("last_seen", models.DateTimeField()),
                ("count", models.IntegerField(default=0)),
            ],
        ),
    ]
