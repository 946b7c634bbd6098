-- Shift handover on the operator console: notes the outgoing duty operator leaves for
-- the next shift, with a snapshot of what was open when the note was written (alarm
-- ids, kinds, states and holders; no resident data, which stays behind audited reveals).
CREATE TABLE handover_notes (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL,
    author       text NOT NULL,
    text         text NOT NULL CHECK (length(text) BETWEEN 1 AND 4000),
    open_alarms  jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX handover_notes_at ON handover_notes (at DESC);
