"""Room calendars through Exchange Web Services (exchangelib).

On premises a delegate (service) account reads each room mailbox over NTLM,
Basic, Digest or Negotiate; in Exchange Online an app registration's OAuth
token impersonates each room. Either way, reading a room costs ONE request
once connected: a FindItem with a CalendarView on the distinguished folder
``calendar`` of the room's mailbox (never a folder looked up by its localized
name, never a GetFolder first). The server version that exchangelib would
otherwise probe for in every new process is learned once and kept on the
Server row; connections (exchangelib Protocols with their TCP sessions, so
NTLM authenticates a connection once) are pooled per server, credential and
configuration. With ``include_body`` one GetItem per 100 events follows, since
EWS never returns bodies from FindItem.

One job per module:

- ``source.py``: EwsSource, the steps of one fetch;
- ``autodiscover.py``: where EWS answers (base URI or Autodiscover v2);
- ``pool.py``: who reads (credentials, msal's tokens), pooled connections, per-upstream
  semaphores;
- ``slots.py``: a read's place among its account's requests in flight, held while a
  request is on the wire;
- ``version.py``: the server's version, learned once and kept on the Server row;
- ``protocol.py``: every exchangelib override and internal relied on, in one place
  (tests/test_ews_protocol_overrides.py checks them against the installed version);
- ``mapping.py``: FindItem's item XML (and GetItem's items) as EventRecords;
- ``errors.py``: exchangelib's failures as SourceErrors with the admin's fix.
"""

from connector.sources.ews.autodiscover import autodiscover_urls
from connector.sources.ews.errors import ErrorContext, EwsHttpError, source_error
from connector.sources.ews.pool import reset_pool
from connector.sources.ews.source import EwsSource

__all__ = [
    "ErrorContext",
    "EwsHttpError",
    "EwsSource",
    "autodiscover_urls",
    "reset_pool",
    "source_error",
]
