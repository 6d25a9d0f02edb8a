"""The database: engine and transactions, tables, and migrations."""
