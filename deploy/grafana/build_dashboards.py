"""Writes flitfeed's Grafana dashboards (deploy/grafana/dashboards/*.json) from one description.

The JSON files are under version control (Grafana provisions them); this script is how they are
changed, so every panel gets a title, a unit, a description and the service/instance template.
``tests/unit/test_dashboards.py`` fails when the files differ from what this script writes.

    .venv/bin/python deploy/grafana/build_dashboards.py          # rewrite the files
    .venv/bin/python deploy/grafana/build_dashboards.py --check  # exit 1 if they are stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "flitfeed-prometheus"}
SEL = 'service=~"$service", instance=~"$instance"'
RI = "$__rate_interval"


def lbl(name: str, value: str) -> str:
    """One exact label matcher (a helper: f-string expressions cannot hold backslashes on Python 3.11)."""
    return f'{name}="{value}"'


def q(metric: str, extra: str = "") -> str:
    """``metric{<template selector>[, extra]}``."""
    return f"{metric}{{{SEL}{', ' + extra if extra else ''}}}"


def p99(metric: str, by: str = "", quantile: str = "0.99") -> str:
    group = f"le{', ' + by if by else ''}"
    return f"histogram_quantile({quantile}, sum by ({group}) (rate({q(metric + '_bucket')}[{RI}])))"


def panel(title: str, unit: str, description: str, *targets: tuple[str, str], kind: str = "timeseries") -> dict:
    return {"title": title, "type": kind, "description": description, "datasource": DATASOURCE,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(65 + i), "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}
                        for i, (expr, legend) in enumerate(targets)]}


def latency_panel(title: str, metric: str, by: str, description: str) -> dict:
    return panel(title, "s", description, *[(p99(metric, by, qn), f"p{qn[2:]} {{{{{by}}}}}" if by else f"p{qn[2:]}")
                                            for qn in ("0.5", "0.95", "0.99")])


OVERVIEW = [
    panel("Feeds published", "ops", "Feeds published per second, by trigger (interaction, request).",
          (f"sum by (trigger) (rate({q('flitfeed_feeds_published_total')}[{RI}]))", "{{trigger}}")),
    panel("Events consumed", "ops", "Messages consumed per second, by service and topic.",
          (f"sum by (service, topic) (rate({q('flitfeed_events_consumed_total')}[{RI}]))", "{{service}} {{topic}}")),
    panel("Feed latency p99", "s", "Event entering Kafka → feed published, 99th percentile, by trigger.",
          (p99("flitfeed_feed_latency_seconds", "trigger"), "{{trigger}}")),
    panel("Freshness p99", "s", "Flit created_at → searchable in the index, 99th percentile, by service.",
          (p99("flitfeed_flit_freshness_seconds", "service"), "{{service}}")),
    panel("Dead letters", "ops", "Messages sent to the dead-letter topic per second, by reason.",
          (f"sum by (reason) (rate({q('flitfeed_events_dead_lettered_total')}[{RI}]))", "{{reason}}")),
    panel("Drift vs threshold", "short", "Each drift signal's score divided by its threshold (> 1 alerts).",
          (f"max by (signal) ({q('flitfeed_drift_score')}) / on (signal) max by (signal) "
           f"({q('flitfeed_drift_threshold')})", "{{signal}}")),
    panel("Processes up", "short", "Scrape targets that answer, by service (one per process).",
          (f"sum by (service) ({q('up', lbl('job', 'flitfeed'))})", "{{service}}"), kind="stat"),
    panel("Resident memory", "bytes", "Resident memory of each process.",
          (q("process_resident_memory_bytes"), "{{service}} {{instance}}")),
]

LATENCY = [
    latency_panel("Feed latency", "flitfeed_feed_latency_seconds", "trigger",
                  "Triggering event entering Kafka → its feed published (end to end), by trigger."),
    latency_panel("Freshness", "flitfeed_flit_freshness_seconds", "service",
                  "Flit created_at → searchable in that process's index (worker: embedded; ranker: replicated)."),
    panel("Stage latency p99", "s", "99th percentile of each processing stage (decode, embed, index_write, "
          "user_update, candidate_query, rank, publish), by service and stage.",
          (p99("flitfeed_stage_duration_seconds", "service, stage"), "{{service}} {{stage}}")),
    panel("Stage latency p50", "s", "Median of each processing stage, by service and stage.",
          (p99("flitfeed_stage_duration_seconds", "service, stage", "0.5"), "{{service}} {{stage}}")),
    panel("Ranker component p99", "s", "99th percentile of each feed pipeline component (source, hydrator, "
          "filter, scorer, selector).",
          (p99("flitfeed_ranker_component_duration_seconds", "kind, component"), "{{kind}} {{component}}")),
    panel("Embedding batch size", "short", "Mean flits per embedding batch (bigger batches = more throughput).",
          (f"sum(rate({q('flitfeed_embed_batch_size_sum')}[{RI}])) / "
           f"sum(rate({q('flitfeed_embed_batch_size_count')}[{RI}]))", "mean")),
    panel("Items per feed", "short", "Mean items per published feed.",
          (f"sum(rate({q('flitfeed_feed_items_sum')}[{RI}])) / sum(rate({q('flitfeed_feed_items_count')}[{RI}]))",
           "mean")),
]

DRIFT = [
    panel("Drift scores", "short", "Current window vs reference window, by signal (README, Drift).",
          (f"max by (service, signal) ({q('flitfeed_drift_score')})", "{{service}} {{signal}}")),
    panel("Drift thresholds", "short", "The alert threshold of each drift signal.",
          (f"max by (signal) ({q('flitfeed_drift_threshold')})", "{{signal}}")),
    panel("Drift window fill", "short", "Samples in each drift window (reference fills once, current slides).",
          (f"max by (signal, window) ({q('flitfeed_drift_window_samples', lbl('of', 'filled'))})",
           "{{signal}} {{window}}")),
    panel("User-vector movement", "short", "Mean cosine distance a taste moves per update.",
          (f"sum(rate({q('flitfeed_user_vector_movement_total')}[{RI}])) / "
           f"sum(rate({q('flitfeed_user_vector_updates_total')}[{RI}]))", "per update")),
    panel("User-vector movement rate", "short", "Cosine distance moved by all users' tastes per second.",
          (f"sum(rate({q('flitfeed_user_vector_movement_total')}[{RI}]))", "per second")),
    panel("Top similarity in feeds", "percentunit", "Quantiles of personalised feeds' highest taste similarity.",
          (p99("flitfeed_feed_top_similarity", "", "0.5"), "p50"),
          (p99("flitfeed_feed_top_similarity", "", "0.9"), "p90")),
    panel("Positive feedback share", "percentunit", "Share of served items liked/reflitted/replied to by their "
          "user within the quality window.",
          (f"sum(rate({q('flitfeed_feed_feedback_total', lbl('feedback', 'positive'))}[{RI}])) / "
           f"sum(rate({q('flitfeed_feed_items_served_total')}[{RI}]))", "positive")),
    panel("Negative feedback share", "percentunit", "Share of served items hidden or reported within the window.",
          (f"sum(rate({q('flitfeed_feed_feedback_total', lbl('feedback', 'negative'))}[{RI}])) / "
           f"sum(rate({q('flitfeed_feed_items_served_total')}[{RI}]))", "negative")),
    panel("Catalog coverage", "percentunit", "Share of the recent catalog shown in the latest feeds.",
          (f"max({q('flitfeed_feed_catalog_coverage_ratio')})", "coverage")),
    panel("Intra-feed diversity", "percentunit", "Mean share of distinct authors per feed.",
          (f"sum(rate({q('flitfeed_feed_author_diversity_ratio_sum')}[{RI}])) / "
           f"sum(rate({q('flitfeed_feed_author_diversity_ratio_count')}[{RI}]))", "distinct authors")),
    panel("Cold-start share", "percentunit", "Share of feeds built for users without a taste yet.",
          (f"sum(rate({q('flitfeed_feeds_published_total', lbl('cold_start', 'true'))}[{RI}])) / "
           f"sum(rate({q('flitfeed_feeds_published_total')}[{RI}]))", "cold start")),
    panel("Embedding model", "short", "The embedding model version each process uses; a change shows as a new row.",
          (f"max by (service, model_version, dim) ({q('flitfeed_model_info')})", "{{service}} {{model_version}}"),
          kind="table"),
    # --- embedding versions (README "Embedding versions"; `flitfeed reembed`'s own progress is on its port) ---
    panel("Vectors kept apart", "ops", "Vectors of another embedding version than the one served, kept out of an "
          "index (other_version) or dropped as a user's taste (taste_other_version: a cold-start feed).",
          (f"sum by (service, reason) (rate({q('flitfeed_index_vectors_skipped_total')}[{RI}]))",
           "{{service}} {{reason}}")),
    panel("Version switches", "short", "Switches of the embedding version served (rankers) or embedded live "
          "(workers) since each process started: `flitfeed versions switch` / `rollback`; every process counts "
          "each one (the Embedding model table shows which version each serves now).",
          (f"max by (service, instance) ({q('flitfeed_version_switches_total')})", "{{service}} {{instance}}")),
    # --- the learned ranking model (README "Learning from feedback") ---------------------------------------
    panel("Ranking examples", "ops", "Labelled examples per second: emitted by each ranker's join (by label) and "
          "learned by each ranker replica.",
          (f"sum by (stage, label) (rate({q('flitfeed_ranker_examples_total')}[{RI}]))", "{{stage}} {{label}}")),
    panel("Examples dropped", "ops", "Examples never learned, by reason (malformed, duplicate, other feature layout, "
          "bad features, unknown action).",
          (f"sum by (reason) (rate({q('flitfeed_ranker_examples_dropped_total')}[{RI}]))", "{{reason}}")),
    panel("Model log loss", "short", "Running log loss of the ranking model per action (each example scored "
          "before it is learned).",
          (f"max by (instance, action) ({q('flitfeed_ranker_model_logloss')})", "{{instance}} {{action}}")),
    panel("Model calibration", "short", "Running mean predicted probability / observed rate per action (1 = "
          "calibrated).",
          (f"max by (instance, action) ({q('flitfeed_ranker_model_calibration_ratio')})", "{{instance}} {{action}}")),
    panel("Exploration share", "percentunit", "Share of served items placed by exploration (bounded by "
          "EXPLORE_SHARE; fewer when no new author has a fresh flit).",
          (f"max by (instance) ({q('flitfeed_ranker_exploration_share_ratio')})", "{{instance}}")),
    panel("Model examples and fallbacks", "short", "Examples each replica's model has learned, and feeds scored by "
          "the prior because the model gave non-finite scores.",
          (f"max by (instance) ({q('flitfeed_ranker_model_examples')})", "{{instance}} examples"),
          (f"sum(increase({q('flitfeed_ranker_model_fallback_total')}[{RI}]))", "fallbacks")),
]

KAFKA = [
    panel("Consumed per topic", "ops", "Messages consumed per second, by service and topic.",
          (f"sum by (service, topic) (rate({q('flitfeed_events_consumed_total')}[{RI}]))", "{{service}} {{topic}}")),
    panel("Produced per topic", "ops", "Messages produced per second, by service and topic.",
          (f"sum by (service, topic) (rate({q('flitfeed_events_produced_total')}[{RI}]))", "{{service}} {{topic}}")),
    panel("Consumer lag", "short", "Uncommitted messages per partition of each service's consumer group.",
          (f"max by (service, topic, partition) ({q('flitfeed_consumer_lag_messages')})",
           "{{service}} {{topic}}[{{partition}}]")),
    panel("Dead letters by reason", "ops", "Dead-lettered messages per second, by service, topic and reason.",
          (f"sum by (service, topic, reason) (rate({q('flitfeed_events_dead_lettered_total')}[{RI}]))",
           "{{service}} {{topic}} {{reason}}")),
    panel("Parked and retried", "ops", "Interactions parked (flit not yet embedded) and their retries by outcome.",
          (f"sum(rate({q('flitfeed_events_parked_total')}[{RI}]))", "parked"),
          (f"sum by (outcome) (rate({q('flitfeed_events_retried_total')}[{RI}]))", "retried {{outcome}}")),
    panel("Duplicates skipped", "ops", "Events skipped because their id was already applied (re-deliveries).",
          (f"sum by (service, topic) (rate({q('flitfeed_events_duplicate_total')}[{RI}]))", "{{service}} {{topic}}")),
    panel("Index size", "short", "Points in each process's vector index.",
          (f"max by (service, instance) ({q('flitfeed_index_points')})", "{{service}} {{instance}}")),
    panel("Qdrant server retries", "ops", "Calls to a Qdrant server retried because it did not answer, by service "
          "and operation (each retry is also logged).",
          (f"sum by (service, operation) (rate({q('flitfeed_index_retries_total')}[{RI}]))",
           "{{service}} {{operation}}")),
    panel("Users in state", "short", "Users whose state each process holds.",
          (f"sum by (service) ({q('flitfeed_users_in_state')})", "{{service}}")),
    panel("CPU", "percentunit", "CPU seconds per second of each process.",
          (f"rate({q('process_cpu_seconds_total')}[{RI}])", "{{service}} {{instance}}")),
]


def dashboard(uid: str, title: str, description: str, panels: list[dict]) -> dict:
    laid = []
    for i, p in enumerate(panels):
        laid.append({"id": i + 1, "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}, **p})
    variable = lambda name, query: {  # noqa: E731
        "name": name, "label": name, "type": "query", "datasource": DATASOURCE, "query": query,
        "definition": query, "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": "All", "value": "$__all"}}
    return {
        "uid": uid, "title": title, "description": description, "tags": ["flitfeed"], "timezone": "utc",
        "schemaVersion": 39, "version": 1, "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            variable("service", 'label_values(up{job="flitfeed"}, service)'),
            variable("instance", 'label_values(up{job="flitfeed", service=~"$service"}, instance)'),
        ]},
        "panels": laid,
    }


DASHBOARDS = {
    "flitfeed-overview.json": dashboard("flitfeed-overview", "flitfeed — overview",
                                        "Is flitfeed fast, fresh and healthy?", OVERVIEW),
    "flitfeed-latency.json": dashboard("flitfeed-latency", "flitfeed — latency and freshness",
                                       "Where the time goes, stage by stage and end to end.", LATENCY),
    "flitfeed-drift-quality.json": dashboard("flitfeed-drift-quality", "flitfeed — drift and quality",
                                             "Embedding, user-vector and score drift; online quality proxies.",
                                             DRIFT),
    "flitfeed-kafka.json": dashboard("flitfeed-kafka", "flitfeed — Kafka and consumer health",
                                     "Throughput per topic, lag per partition, dead letters, retries, state.",
                                     KAFKA),
}


def render() -> dict[str, str]:
    return {name: json.dumps(d, indent=2, ensure_ascii=False) + "\n" for name, d in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text() != text]
        if stale:
            print(f"stale dashboards (run deploy/grafana/build_dashboards.py): {stale}", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
