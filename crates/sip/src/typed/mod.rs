//! Typed views of header values, parsed on demand from the message's bytes and borrowing from
//! them. Each type has a standalone `parse` for a single value; [`crate::Message`] has an
//! accessor per header that also splits comma-separated lists and reports faults with their
//! offset in the message.

pub mod addr;
pub mod auth;
pub mod simple;
pub mod via;
