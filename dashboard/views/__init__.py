"""Dashboard pages: server-rendered shells whose scripts read and act through the REST API."""
