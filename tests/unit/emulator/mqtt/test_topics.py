"""Topic filters against topics: `+` one level, `#` the rest (the parent level included)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.mqtt.topics import matches

LEVEL = st.sampled_from(["$iothub", "methods", "POST", "a", "b", "", "?$rid=1"])


def by_levels(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 section 4.7, level by level (what the fast paths must agree with)."""
    filter_levels, topic_levels = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True
        if i >= len(topic_levels) or level not in ("+", topic_levels[i]):
            return False
    return len(filter_levels) == len(topic_levels)


@given(st.lists(st.one_of(LEVEL, st.just("+")), min_size=0, max_size=4), st.booleans(),
       st.lists(LEVEL, min_size=1, max_size=5))
def test_every_filter_matches_as_mqtt_says(levels, multi_level, topic_levels):
    topic_filter = "/".join(levels + ["#"] if multi_level else levels or ["a"])
    topic = "/".join(topic_levels)
    assert matches(topic_filter, topic) == by_levels(topic_filter, topic)


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("$iothub/methods/POST/#", "$iothub/methods/POST/lockDoor/?$rid=1", True),
    ("$iothub/methods/POST/#", "$iothub/methods/POST", True),  # '#' includes the parent level
    ("$iothub/methods/POST/#", "$iothub/methods/POSTX/a", False),
    ("$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/?$version=2", False),
    ("devices/+/messages/devicebound/#", "devices/d1/messages/devicebound/%24.to=x", True),
    ("#", "$iothub/methods/POST/m/?$rid=1", True),
])
def test_the_filters_devices_use(topic_filter, topic, expected):
    assert matches(topic_filter, topic) is expected
