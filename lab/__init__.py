"""The faces of wasmlab: the wasmlab CLI, the Textual UI and the notebook widgets."""
