"""Apps run by the SQLite lifecycle tests as real ``eventbus run`` processes."""
