"""Handlers: what runs a container's entrypoint inside the prepared sandbox (native execve or a Wasm engine)."""
