"""The bundled embedder's process-wide handle: counting tokens runs alongside embedding in
another thread (ingestion splits the next documents while the current ones are embedded)."""

from __future__ import annotations

import threading
import time

import numpy as np

from hearth.engines.e5 import shared_e5

TEXTS = [
    "年假按工龄计算，满一年不满十年的为五天。",
    "Expense reports are due within 30 days of travel; receipts over ¥500 need approval.",
    "问：报销需要哪些材料？答：发票原件、审批单和付款记录。",
    "The HX-2040 router supports 802.11ax at up to 2.4 Gbit/s.",
] * 8


def test_counting_while_encoding_gives_the_same_counts_and_vectors() -> None:
    e5 = shared_e5()
    expected = [e5.token_count(t) for t in TEXTS]
    alone = e5.encode(TEXTS, query=False)
    counted: list[list[int]] = []
    finished: list[float] = []  # when each round of counting ended
    during = threading.Event()

    def count() -> None:
        while not during.is_set():
            counted.append([e5.token_count(t) for t in TEXTS])
            finished.append(time.perf_counter())

    worker = threading.Thread(target=count)
    worker.start()
    try:
        started = time.perf_counter()
        together = e5.encode(TEXTS, query=False)
        ended = time.perf_counter()
    finally:
        during.set()
        worker.join()
    assert counted and all(row == expected for row in counted)
    # Rounds of counting ended while the batch was being embedded: no lock held them back.
    assert sum(started < t < ended for t in finished) >= 3
    np.testing.assert_allclose(together, alone, atol=1e-6)
