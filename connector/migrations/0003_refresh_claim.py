from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("connector", "0002_calendar_refresh_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="refreshstatus",
            name="refreshing_until",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]
