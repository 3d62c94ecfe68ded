from django.apps import AppConfig


class ConnectorConfig(AppConfig):
    name = "connector"
    verbose_name = "Calendars"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from connector import checks  # noqa: F401  (registers the system checks)
        from connector.roles import create_roles

        post_migrate.connect(create_roles, sender=self, dispatch_uid="connector.create_roles")

        # Signals keeping refreshes in step with calendars; the dispatcher's schedule.
        from connector import schedules

        post_migrate.connect(
            schedules.ensure_schedules, sender=self, dispatch_uid="connector.ensure_schedules"
        )
