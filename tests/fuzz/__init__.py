"""Coverage-guided fuzzing of every parser (see docs/fuzzing.md)."""
