"""Streaming (prequential) evaluation of flitfeed on real interaction data.

``flitfeed evaluate DATASET_DIR --out DIR`` replays a dataset in timestamp
order through the production ranker and the baselines, test-then-learn:

* :mod:`~flitfeed.evaluation.dataset` — the dataset shape and its loader;
* :mod:`~flitfeed.evaluation.catalog` — item texts embedded once, cached;
* :mod:`~flitfeed.evaluation.metrics` — pure ranking metrics;
* :mod:`~flitfeed.evaluation.methods` — the recommenders compared (flitfeed and baselines);
* :mod:`~flitfeed.evaluation.replay` — the test-then-learn loop;
* :mod:`~flitfeed.evaluation.report` — results.json, report.md and plots.
"""
