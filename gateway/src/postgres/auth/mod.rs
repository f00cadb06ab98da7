//! The client halves of the upstream's authentication methods: Custos proves itself to
//! the database with credentials the engineer never sees.
