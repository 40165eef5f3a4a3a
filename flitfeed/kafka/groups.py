"""Who owns which partition: the broker's view of a consumer group.

Every flitfeed service sets its Kafka client id to its instance id
(``KafkaConfig.instance()``), so the group's member list names the replicas. The
worker's group is ``FLITFEED_APP_ID``, the ranker's ``FLITFEED_RANKER_GROUP``::

    owners = partition_owners(kafka, kafka.ranker_group, kafka.topic("feed-requests"))
    # {0: "ranker-0", 1: "ranker-0", 2: "ranker-1", ...}

This is what ``kafka-consumer-groups.sh --describe --members --verbose`` shows,
read through the admin API so tests and operators need no Kafka scripts.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

from flitfeed.kafka.config import client_config
from flitfeed.settings import KafkaConfig


@dataclass(frozen=True)
class GroupView:
    """A consumer group as the broker describes it."""

    state: str
    #: client id (= instance id) → partitions of every topic assigned to that member
    members: dict[str, list[tuple[str, int]]]

    def owners(self, topic: str) -> dict[int, str]:
        """Partition of ``topic`` → the instance that owns it."""
        return {p: client for client, tps in self.members.items() for t, p in tps if t == topic}


def describe_group(kafka: KafkaConfig, group_id: str, timeout_s: float = 10.0,
                   admin: AdminClient | None = None) -> GroupView:
    """The group's state and members; raises ``KafkaException`` while the coordinator is unavailable."""
    admin = admin if admin is not None else AdminClient(client_config(kafka))  # an AdminClient is falsy (len 0)
    description = admin.describe_consumer_groups([group_id], request_timeout=timeout_s)[group_id].result()
    members: dict[str, list[tuple[str, int]]] = {}
    for member in description.members:
        assigned = member.assignment.topic_partitions if member.assignment else []
        members.setdefault(member.client_id, []).extend((tp.topic, tp.partition) for tp in assigned)
    return GroupView(state=str(description.state.name).lower(), members=members)


def partition_owners(kafka: KafkaConfig, group_id: str, topic: str) -> dict[int, str]:
    """Partition → owning instance for one topic of a consumer group (empty while it rebalances)."""
    return describe_group(kafka, group_id).owners(topic)


def owners_report(kafka: KafkaConfig) -> str:
    """Which replica owns which partition, for the worker and the ranker groups (``flitfeed owners``)."""
    from flitfeed.streams.topics import TOPIC_FEED_REQUESTS, TOPIC_INTERACTIONS

    admin = AdminClient(client_config(kafka))
    lines = []
    for role, group, topic in (("worker", kafka.app_id, TOPIC_INTERACTIONS),
                               ("ranker", kafka.ranker_group, TOPIC_FEED_REQUESTS)):
        view = describe_group(kafka, group, admin=admin)
        owners = view.owners(kafka.topic(topic))
        lines.append(f"{role} group {group!r} ({view.state}, {len(view.members)} members)")
        for partition in range(kafka.partitions):
            lines.append(f"  partition {partition:>3}  {owners.get(partition, '(unassigned)')}")
    return "\n".join(lines)
