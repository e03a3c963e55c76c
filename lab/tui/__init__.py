"""The wasmlab terminal UI: a Textual face over the Lab service, opened by `wasmlab` with no arguments."""
