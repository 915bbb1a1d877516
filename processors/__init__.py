"""Reference applications of kafka-sagas, runnable with ``make demo``."""
