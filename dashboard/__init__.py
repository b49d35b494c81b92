"""Server-rendered dashboard pages (Django templates + Chart.js) reading the REST API."""
