"""The off-policy loop's metrics: each averaged over the updates of an iteration that report it."""

from __future__ import annotations

import torch

from rlrun.algos.offpolicy import MetricMeans


def test_metric_means_average_each_key_over_the_updates_that_report_it_across_chunks():
    means = MetricMeans(chunk=4)
    for i in range(10):  # 10 updates: two full chunks of "loss" and a partial one
        delayed = {"actor_loss": torch.tensor(float(i))} if i % 3 == 0 else {}  # updates 0, 3, 6, 9
        means.add({"loss": torch.tensor(float(i)), **delayed})
    assert means.result() == {"loss": 4.5, "actor_loss": 4.5}
    assert MetricMeans().result() == {}
