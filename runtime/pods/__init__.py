"""Pods: Kubernetes YAML turned into lab plans (annotation propagation, generated cluster config)."""
