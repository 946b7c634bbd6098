"""The registry: facilities, residents, devices and logins (``service``, ``auth``), their
pydantic shapes (``schemas``) and the Mosquitto password/ACL files written from them
(``broker_files``). Imports only ``storage``, ``protocol`` and the shared utilities.
"""
