//! RFC 4475 torture tests and whole-message tests.
