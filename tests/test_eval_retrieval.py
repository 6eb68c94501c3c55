"""`gdn eval-retrieval` on the reference clip: recall beside the random baseline, per-query ranks, the plot."""
from __future__ import annotations

import json

from gps_denied_nav.cli import main as gdn


def test_eval_retrieval_scores_every_frame_against_the_random_baseline(short_clip, small_corpus, tmp_path, capsys):
    assert gdn(["eval-retrieval", str(short_clip), "--corpus", str(small_corpus), "--out", str(tmp_path),
                "--verify-top", "5"]) == 0
    result = json.loads((tmp_path / "retrieval.json").read_text())
    assert (tmp_path / "retrieval_ranks.png").stat().st_size > 1000
    assert result["queries"] == len(result["per_query"]) > 50
    for k in (1, 5, 10, 20):
        assert 0.0 <= result[f"random@{k}"] <= 1.0 and 0.0 <= result[f"recall@{k}"] <= 1.0
    # The corpus' model on frames rendered from its own map: far better than chance, and a prior helps.
    assert result["recall@5"] > 3 * result["random@5"]
    assert result["prior_narrowed"]["recall@1"] >= result["recall@1"]
    ranks = [q["rank_global"] for q in result["per_query"]]
    assert abs(sum(1 <= r <= 1 for r in ranks) / len(ranks) - result["recall@1"]) < 1e-9
    # The matcher re-orders the top 5 by inliers: on frames of the corpus' own map the right tile rises to the
    # top where the descriptor had it anywhere in those 5, and nothing below the 5th moves.
    verified = result["verified"]
    assert verified["top"] == 5 and verified["recall@1"] >= result["recall@5"] - 0.05
    assert verified["recall@5"] == result["recall@5"] and verified["recall@20"] == result["recall@20"]
    assert all((q["rank_verified"] > 5) == (q["rank_global"] > 5) for q in result["per_query"])
    out = capsys.readouterr().out
    assert "random" in out and "top 5 verified" in out


def test_eval_retrieval_needs_ground_truth(small_corpus, tmp_path):
    from gps_denied_nav.replay.bag_types import BAG_VERSION, typestore
    from rosbags.rosbag2 import StoragePlugin, Writer

    bag = tmp_path / "no_truth.mcap"
    with Writer(bag, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection("/imu/data", "sensor_msgs/msg/Imu", typestore=typestore())
    assert gdn(["eval-retrieval", str(bag), "--corpus", str(small_corpus), "--out", str(tmp_path / "o")]) == 2
