"""The data plane: trio listeners, the HTTP proxy loop, the backend
connection pool and the dialer. The only place where bytes move."""
