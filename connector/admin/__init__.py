"""The admin: servers, calendars (with the configuration.xml import and export).

- ``servers``: ``ServerAdmin``;
- ``calendars``: ``CalendarAdmin``, its inlines (rooms, filters, alarms) and
  actions (refresh now, export, new feed keys);
- ``configuration``: the pages to import configuration.xml (upload → preview
  → confirm, through ``xmlconfig.import_configuration``) and to export it.

Credentials have their admin in ``accounts.admin``. Django's autodiscover
imports this package, which registers the model admins.
"""

from __future__ import annotations

from django.contrib import admin

from connector.admin.calendars import CalendarAdmin
from connector.admin.servers import ServerAdmin

__all__ = ["CalendarAdmin", "ServerAdmin"]

# The name on every admin page, the status page and the console.
admin.site.site_header = "ews-calendar"
admin.site.site_title = "ews-calendar"
admin.site.site_url = None  # no public site: "/" redirects to the admin, so no "View site"
