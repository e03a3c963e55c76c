"""The TUI's views (images, containers, history) and its pushed screens (logs, describe, confirm, help)."""
