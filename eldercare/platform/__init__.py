"""The platform layer (issue 8): service records and subsidies, built on the alert engine
and the registry. It reacts to alarm events through the outbox/NOTIFY or is called from
``eldercare.http``; it never imports ``gateway`` or ``models``, and ``alerts`` never imports it.
"""
