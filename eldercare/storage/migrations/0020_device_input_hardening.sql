-- Issue 7 (security audit C2, H7, M12): device input never reaches platform state.

-- C2: "cancel requested" is platform state, written by the gateway when a resident's
-- `cancel` arrives; it used to live in alarms.details next to device-supplied keys,
-- where a device could forge it or make the summary's cast fail for every operator.
ALTER TABLE alarms ADD COLUMN cancel_requested_at timestamptz,
                   ADD COLUMN cancel_msg_id text;

CREATE FUNCTION pg_temp.try_timestamptz(t text) RETURNS timestamptz
LANGUAGE plpgsql AS $$
BEGIN
    RETURN t::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- Only the gateway wrote cancel_msg_id together with cancel_requested_at.
UPDATE alarms
SET cancel_requested_at = pg_temp.try_timestamptz(details->>'cancel_requested_at'),
    cancel_msg_id = details->>'cancel_msg_id'
WHERE details ? 'cancel_msg_id';

-- Device-raised alarms (they carry the device's message id): the device's extra fields
-- move under details.device, where nothing reads them as platform state.
UPDATE alarms
SET details = jsonb_build_object('device', details - 'cancel_requested_at' - 'cancel_msg_id')
WHERE source_msg_id IS NOT NULL AND NOT (details ? 'device' AND jsonb_typeof(details->'device') = 'object');

-- H7: a message id is a duplicate only when the content matches too; a device whose
-- counter restarted sends a new press under an old id. NULL for rows stored before.
ALTER TABLE message_ids ADD COLUMN digest bytea;

-- M12: device ids are MQTT user names and topic levels (protocol.DEVICE_ID_RE);
-- PostgreSQL's `$` is end of string, so a trailing newline is refused here too.
ALTER TABLE devices ADD CONSTRAINT devices_id_form
    CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$');
