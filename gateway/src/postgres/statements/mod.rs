//! What a statement does, from a real PostgreSQL parse tree (`pg_query`).
