DROP TABLE portal_settings;
DROP TABLE portal_sessions;
