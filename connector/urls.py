from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from connector.views import (
    console,
    errors,
    feed,
    graph_switch,
    health,
    legacy,
    metrics,
    status,
    verify,
)

urlpatterns = [
    # No public site: "/" leads to the admin (its home page guides a first run).
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("ical/<str:calendar_id>.ics", feed.feed, name="feed"),
    path("plugnCast/.applets/.ews-calendar/2ical.php", legacy.legacy_feed, name="legacy-feed"),
    path("status/", status.status_page, name="status"),
    path("status/fragment/", status.status_fragment, name="status-fragment"),
    path("console/<str:calendar_id>/", console.console, name="console"),
    path("console/<str:calendar_id>/refresh/", console.refresh_now, name="console-refresh"),
    path(
        "servers/<str:server_id>/switch-to-graph/",
        graph_switch.switch_page,
        name="switch-to-graph",
    ),
    path("servers/<str:server_id>/compare/", graph_switch.compare_page, name="compare-graph"),
    path(
        "credentials/app-registrations/<int:pk>/verify/",
        verify.verify_page,
        name="verify-app-registration",
    ),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
]

handler400 = errors.bad_request
