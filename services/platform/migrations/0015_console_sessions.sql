-- Console sign-ins: each gets a token of its own, which the console's cookie holds instead of the
-- operator's token, which expires with the cookie and which signing out revokes. An operator
-- sees them in ListTokens (source 'console') and may revoke one to end that browser's session.
ALTER TABLE api_tokens ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_source_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_source_check CHECK (source IN ('admin', 'config', 'console'));
-- Only a console session expires, and every one does.
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_console_expires CHECK ((source = 'console') = (expires_at IS NOT NULL));
