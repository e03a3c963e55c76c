"""Linux mechanisms: namespaces, mounts, pivot_root, cgroups, capabilities and rlimits."""
