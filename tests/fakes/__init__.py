"""Protocol-level fakes of Exchange, the Microsoft identity platform and Graph.

Real HTTP(S) servers on 127.0.0.1, so that exchangelib, msal and requests run
unmodified against them. Used by the tests and by the benchmark.
"""
