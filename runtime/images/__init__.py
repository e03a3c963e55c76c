"""Images: Containerfile builds, the embedded OCI store, archives, registries and unpacking to bundles."""
