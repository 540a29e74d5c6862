//! Unit tests of `CallTask` (issue 10 item 6): written by a helper.
