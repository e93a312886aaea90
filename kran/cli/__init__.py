"""kran's docker-compatible command line: thin commands over the engine, loaded lazily."""
