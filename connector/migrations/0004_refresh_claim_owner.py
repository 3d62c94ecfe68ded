from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("connector", "0003_refresh_claim"),
    ]

    operations = [
        migrations.AddField(
            model_name="refreshstatus",
            name="refreshing_by",
            field=models.CharField(blank=True, editable=False, max_length=300),
        ),
    ]
