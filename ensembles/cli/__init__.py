"""Command-line entry points: argument parsing and one-line errors, no business logic."""
