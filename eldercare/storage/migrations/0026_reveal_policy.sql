-- Issue 7 (security audit M1): a reveal needs an open alarm of the resident or a stated
-- reason, and is throttled per user. Refused attempts are kept too (refused says why), so
-- a supervisor sees who tried; an alarm id of a refused attempt proves nothing.
ALTER TABLE reveals ADD COLUMN refused text;
-- The throttle counts one user's recent reveals; the audit view lists them.
CREATE INDEX reveals_username ON reveals (username, at DESC);
