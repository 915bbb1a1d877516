"""Developer tools: a real single-node Kafka broker without Docker."""

from sagas.dev.kafka import KafkaDistribution, LocalKafka, default_cache_dir

__all__ = ["KafkaDistribution", "LocalKafka", "default_cache_dir"]
