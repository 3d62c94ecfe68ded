from django.contrib import admin
from django.urls import path

from connector.views import feed

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ical/<str:calendar_id>.ics", feed.feed, name="feed"),
    path("plugnCast/.applets/.ews-calendar/2ical.php", feed.legacy_feed, name="legacy-feed"),
]
