"""The data model: OCI runtime-spec, OCI image-spec and the Kubernetes Pod subset."""
