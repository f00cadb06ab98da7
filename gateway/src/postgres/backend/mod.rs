//! The upstream side: one connection to the database per client connection.
