"""Grafana dashboards as code: ``grafana`` holds the building blocks, one module per
dashboard builds it, and ``build`` writes the JSON files Grafana provisions."""
