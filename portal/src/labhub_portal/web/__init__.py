"""Browser UI of the portal (server-rendered pages, own static files)."""
