"""The zygote: the lean helper process that forks every container (server), its client, and their protocol."""
