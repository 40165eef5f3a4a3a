"""User-state memory: bytes per user in the worker's profile table and the ranker's state map, at 10k and 100k users.

``python -m benchmarks.user_memory [--quick] [--json PATH] [--users 10000,100000] [--events 20]``

Each user receives ``--events`` interactions through the real
:meth:`~flitfeed.encoders.user_vector.UserProfile.learn_one` (real-looking ids,
384-d vectors, its partition's decided offsets), then is stored as each service stores it: the worker's Faust
table value (``UserProfile.to_bytes()``, which a memory table holds as it is: ``worker_table``; its length is
what RocksDB and the changelog store per user: ``worker_stored``; the older JSON of ``to_dict()`` for
comparison: ``worker_json``; and the time to encode and decode one) and the ranker's map of :class:`~flitfeed.streams.events.UserState`
records as decoded from ``user-states`` (``ranker_state``) and the compact
:class:`~flitfeed.ranker.held.HeldState` the ranker keeps (``ranker_held``). Memory is measured with ``tracemalloc`` (Python allocations, exact and
independent of other processes on the machine). A last row per size fills every
bounded list to its capacity (the worst case the settings allow).
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from typing import Any

import numpy as np

from benchmarks.common import Timer, bench_parser, print_table, setup_logging, write_json
from flitfeed.encoders.user_vector import TasteParams, UserProfile
from flitfeed.settings import Settings
from flitfeed.ranker.held import HeldState
from flitfeed.streams.events import UserState
from flitfeed.streams.user_updates import taste_params, user_state


def build(n_users: int, events: int, params: TasteParams, rng: np.random.Generator,
          fill: bool = False) -> list[UserProfile]:
    """``n_users`` profiles of ``events`` interactions each; ``fill``: then every bounded list topped up to its
    capacity (hides of authors not muted yet; parked positions waiting): the worst case."""
    dim = 384
    pool = rng.standard_normal((256, dim)).astype(np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    kinds = ["view", "view", "like", "reflit", "reply", "hide"]
    profiles = []
    seq = 0
    for u in range(n_users):
        p = UserProfile(f"bird-{u:06d}")
        for e in range(events):
            seq += 1
            flit = int(rng.integers(1_000_000))
            p.learn_one(f"ev-s11-{seq:09d}", kinds[e % len(kinds)], 1.7e9 + e, pool[flit % 256],
                        f"author-{flit % 200:03d}", f"flit-s11-{flit:07d}", params, dwell_ms=4000)
            p.mark_decided(u % 6, 10_000_000 + seq, params.decided_capacity)
        if fill:
            for a in range(params.muted_capacity):
                if len(p.muted_authors) >= params.muted_capacity:
                    break
                if f"author-{a:03d}" not in p.muted_authors:
                    seq += 1
                    flit = int(rng.integers(1_000_000))
                    p.learn_one(f"ev-s11-{seq:09d}", "hide", 1.7e9 + events, pool[flit % 256], f"author-{a:03d}",
                                f"flit-s11-{flit:07d}", params)
                    p.mark_decided(u % 6, 10_000_000 + seq, params.decided_capacity)
            for k in range(params.parked_capacity):
                p.wait_for(u % 6, 10_000_000 + seq - k, params.parked_capacity)
        profiles.append(p)
    return profiles


def measure(make: Any) -> tuple[Any, int]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    obj = make()
    gc.collect()
    size = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return obj, size


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--users", default=None, help="comma-separated user counts (default 10000,100000)")
    parser.add_argument("--events", type=int, default=20, help="interactions per user (default 20)")
    args = parser.parse_args(argv)
    setup_logging()
    sizes = [int(s) for s in (args.users or ("1000" if args.quick else "10000,100000")).split(",")]
    s = Settings()
    params = taste_params(s.worker)
    rng = np.random.default_rng(5)
    rows: list[dict[str, Any]] = []
    full = max(s.worker.seen_capacity, s.worker.dedup_capacity, s.worker.decided_capacity)
    for n in sizes:
        for events in (args.events, full):
            # The worst case is measured on 100 users (filling every list is slow): memory per user is what
            # matters, and it is linear in the number of users.
            n_here = n if events == args.events else (20 if args.quick else 100)
            with Timer() as t:
                profiles = build(n_here, events, params, rng, fill=events == full)
            # The table holds each profile's bytes (a memory table, or RocksDB's value), read back as after a
            # restart, when the values come back from the changelog.
            encoded = [p.to_bytes() for p in profiles]
            table, worker_bytes = measure(lambda ps=profiles, bs=encoded: {p.user_id: bytes(bytearray(b)) for p, b in zip(ps, bs)})
            del table
            stored_bytes = sum(len(b) for b in encoded)
            json_bytes = sum(len(json.dumps(p.to_dict()).encode()) for p in profiles)
            with Timer() as enc:
                for p in profiles:
                    p.to_bytes()
            with Timer() as dec:
                for b in encoded:
                    UserProfile.from_stored(b)
            del encoded
            records = [UserState.model_validate_json(user_state(p, "ev", 0.0).to_bytes()) for p in profiles]
            states, ranker_bytes = measure(lambda rs=records: {s.user_id: s for s in
                                                               (UserState.model_validate_json(r.to_bytes()) for r in rs)})
            del states
            held, held_bytes = measure(lambda rs=records: {s.user_id: HeldState.of(s) for s in rs})
            # What the lists hold (the worst case: each at its capacity).
            lengths = {name: round(float(np.mean([len(getattr(p, attr)) for p in profiles])))
                       for name, attr in (("seen", "seen"), ("muted", "muted_authors"), ("hashes", "event_hashes"),
                                          ("waiting", "waiting"))}
            lengths["offsets"] = round(float(np.mean([sum(len(d.offsets) for d in p.decided.values())
                                                      for p in profiles])))
            del held, records, profiles
            rows.append({
                "users": n, "events_per_user": events, "measured_users": n_here, **lengths,
                "worker_table_bytes_per_user": round(worker_bytes / n_here),
                "worker_stored_bytes_per_user": round(stored_bytes / n_here),
                "worker_json_bytes_per_user": round(json_bytes / n_here),
                "encode_us": round(enc.seconds / n_here * 1e6), "decode_us": round(dec.seconds / n_here * 1e6),
                "ranker_state_bytes_per_user": round(ranker_bytes / n_here),
                "ranker_held_bytes_per_user": round(held_bytes / n_here),
                "worker_table_mib_at_users": round(worker_bytes / n_here * n / 2**20, 1),
                "ranker_state_mib_at_users": round(ranker_bytes / n_here * n / 2**20, 1),
                "ranker_held_mib_at_users": round(held_bytes / n_here * n / 2**20, 1),
                "build_s": round(t.seconds, 1),
            })
    print_table("User-state memory (tracemalloc; MiB columns scaled to `users`)", rows)
    if args.json:
        write_json(args.json, "user_memory", {"quick": args.quick, "users": sizes, "events": args.events,
                                              "capacities": {"seen": s.worker.seen_capacity, "muted": s.worker.muted_capacity,
                                                             "dedup": s.worker.dedup_capacity,
                                                             "decided": s.worker.decided_capacity,
                                                             "parked": s.worker.parked_capacity}}, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
