"""Command-line entry points (absl): thin wrappers that parse flags and call the library."""
