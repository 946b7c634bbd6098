-- The health scan runs every few seconds and asks for uncleared health alarms; without
-- this index that is a scan of every alarm ever raised.
CREATE INDEX alarms_uncleared_health ON alarms (kind, facility_id, device_id)
    WHERE cleared_at IS NULL
      AND kind IN ('device_offline', 'facility_outage', 'camera_offline', 'low_battery');
