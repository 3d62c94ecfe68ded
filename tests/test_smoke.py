from connector.models import Calendar, Filter, Server


def test_new_calendar_masks_private_events_by_default(db: None) -> None:
    server = Server.objects.create(server_id="s", type="ics", base_uri="https://example.invalid/")
    calendar = Calendar.objects.create(calendar_id="c", server=server)
    filters = Filter.objects.create(calendar=calendar)
    assert filters.mask_sensitivity == "Personal,Private,Confidential"
