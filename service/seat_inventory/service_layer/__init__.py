"""Use cases (reserve, release, extend, events, ...) and the ports they need."""
