"""W&B starts on a thread (rlrun.logging.BackgroundWandb): rows logged before it is up must reach the
run's offline history, in order, as with a blocking start. Read back from the files W&B wrote."""

from pathlib import Path

import wandb

from rlrun.logging import BackgroundWandb, Logger, logger_config
from tests.test_cli import wandb_history


def test_rows_logged_while_wandb_starts_reach_its_history_in_order(tmp_path: Path):
    cfg = logger_config({"csv": False, "tensorboard": False, "progress_bar": False,
                         "wandb": {"mode": "offline", "project": "rlrun-test", "entity": None, "group": None,
                                   "tags": [], "init_timeout": 30}})
    # Holding the start lock keeps the run from coming up until the rows have been logged.
    with BackgroundWandb._starting:
        logger = Logger(cfg, tmp_path, {"seed": 0}, total_steps=300, start_step=0, wandb_id="bgstart1",
                        resuming=False)
        for step in (100, 200, 300):
            logger.log_train(step, {"train/loss": step / 100, "time/sps": 1000.0}, recent_return=float("nan"))
        assert logger.wandb_run.rows.qsize() == 3  # nothing sent yet: the run is not up
    logger.log_eval(300, {"eval/mean_return": 7.0, "eval/std_return": 0.5}, total_steps=300)
    logger.close()
    # A run finished off the main thread returns before W&B's service has written its file; the service
    # finishes writing before the process exits (what the CLI's runs rely on), here before teardown returns.
    wandb.teardown()
    (log,) = tmp_path.glob("wandb/offline-run-*/run-bgstart1.wandb")
    history = wandb_history(log)
    assert [row["global_step"] for row in history] == [100, 200, 300, 300]
    assert [row.get("train/loss") for row in history[:3]] == [1.0, 2.0, 3.0]
    assert history[3]["eval/mean_return"] == 7.0
