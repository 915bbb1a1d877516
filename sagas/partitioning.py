"""The Java client's default partitioner (murmur2), so every client agrees where a saga lives.

librdkafka's own default (consistent_random, CRC32) differs from Java's; kafka-sagas sets
``partitioner=murmur2_random`` on every producer and uses :func:`partition_for` to find a saga's
partition without reading the topic.
"""

from __future__ import annotations

__all__ = ["murmur2", "partition_for"]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` (as ``org.apache.kafka.common.utils.Utils.murmur2``)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    for i in range(0, length - length % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length & ~3
    extra = length % 4
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a keyed record goes to among ``partitions``, as the Java client picks it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
