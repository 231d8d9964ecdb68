"""Reading the store: similarity search and retrieval."""
