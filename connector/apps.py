from django.apps import AppConfig


class ConnectorConfig(AppConfig):
    name = "connector"
    verbose_name = "Calendars"
    default_auto_field = "django.db.models.BigAutoField"
