"""MQTT topic filters as IoT Hub applies them: which topics a filter matches, and which filters a
device may hold.

IoT Hub is not a general broker: a device can only ever receive its own device-bound traffic, so a
filter is granted when it can match one of the device's own device-bound topics (``#``,
``$iothub/#``, ``devices/+/messages/devicebound/#`` as the Embedded C SDK subscribes, ...), and
delivery matches the concrete topic of that device's traffic against the filters it holds. Unlike
[MQTT-4.7.2-1], a wildcard in the first level also matches `$iothub/...` topics: Microsoft's own MQTT
sample subscribes to ``#`` and gets its method requests and twin responses.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["matches", "matches_any", "may_match_shape", "TopicShape"]

#: A family of concrete topics, level by level; None stands for any one level's value.
TopicShape = tuple[str | None, ...]


def matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` is delivered to a subscription to ``topic_filter`` (`+` one level, `#` the rest)."""
    if topic_filter.endswith("/#") and "+" not in topic_filter:  # the SDKs' filters: a prefix test
        return topic.startswith(topic_filter[:-1]) or topic == topic_filter[:-2]
    levels = topic.split("/")
    for i, level in enumerate(topic_filter.split("/")):
        if level == "#":
            return True
        if i >= len(levels) or (level != "+" and level != levels[i]):
            return False
    return len(topic_filter.split("/")) == len(levels)


def matches_any(topic_filters: Iterable[str], topic: str) -> bool:
    return any(matches(topic_filter, topic) for topic_filter in topic_filters)


def may_match_shape(topic_filter: str, shape: TopicShape) -> bool:
    """True when ``topic_filter`` matches at least one topic of ``shape``."""
    filter_levels = topic_filter.split("/")
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True
        if i >= len(shape):
            return False
        if level != "+" and shape[i] is not None and level != shape[i]:
            return False
    return len(filter_levels) == len(shape)
