"""Reusable TUI widgets: the filterable resource table and the create-time chart."""
