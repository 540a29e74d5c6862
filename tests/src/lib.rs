//! Test helpers: a recording HTTP backend and a WebSocket client speaking the client protocol.
