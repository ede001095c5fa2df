"""Apps the observability tests run in real ``eventbus run`` workers."""
