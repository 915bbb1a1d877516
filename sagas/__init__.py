"""kafka-sagas."""
