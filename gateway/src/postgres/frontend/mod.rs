//! The client side: what a PostgreSQL client sends Custos, and what it is answered.
