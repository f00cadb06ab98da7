//! The wire protocol's messages (PostgreSQL docs, "Message Formats"), one file each.
