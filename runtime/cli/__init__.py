"""Command-line faces that belong to the runtime (wasmlab-oci)."""
