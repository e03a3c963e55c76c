"""On-disk state: per-container state and locks, the OCI image layout, atomic writes."""
