"""`ftlab compare` end to end on the real offline models (quick settings)."""

import csv
import dataclasses

import pytest

from ftlab.cli import main
from ftlab.strategies import TEXT_SETTINGS, Settings, compare


@pytest.mark.slow
def test_compare_cli_quick_on_efficientnet_digits(tmp_path, capsys):
    code = main(
        [
            "compare",
            "--quick",
            "--strategies",
            "feature_extraction,fine_tune_top,scratch",
            "--seeds",
            "2",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [(r["strategy"], r["seed"]) for r in rows] == [
        (name, seed) for name in ("feature_extraction", "fine_tune_top", "scratch") for seed in ("0", "1")
    ]
    by = {r["strategy"]: r for r in rows}
    assert int(by["feature_extraction"]["trainable_params"]) == 1280 * 10 + 10  # Lite0's classifier
    assert int(by["scratch"]["trainable_params"]) == int(by["scratch"]["total_params"])
    # pretrained ImageNet features beat a random network trained as briefly
    assert float(by["feature_extraction"]["test_accuracy"]) > float(by["scratch"]["test_accuracy"])
    assert (tmp_path / "results.png").stat().st_size > 1000
    assert "selected on validation: " in out and "feature_extraction" in out and " ± " in out


@pytest.mark.slow
def test_compare_result_does_not_depend_on_which_strategies_ran_before():
    """A strategy's result is the same alone or after others: each new head is seeded."""
    quick = dataclasses.replace(Settings(), epochs=1, head_epochs=3)
    kw = dict(settings=quick, image_size=32, max_per_class=12, progress=False)
    (alone,) = compare("efficientnet_lite0", "digits", strategies=["fine_tune_top"], **kw)
    _, after = compare("efficientnet_lite0", "digits", strategies=["feature_extraction", "fine_tune_top"], **kw)
    assert after.test_accuracy == alone.test_accuracy
    assert after.history.column("train_loss") == alone.history.column("train_loss")


def test_compare_cli_leaves_image_or_text_defaults_to_the_model(tmp_path, monkeypatch):
    """The CLI passes only what was asked for; compare() picks image or text settings by the model it loads."""
    import ftlab.cli

    seen = {}

    def fake_compare(model, dataset, **kw):
        seen.update(kw, model=model)
        raise ValueError("stop here")

    monkeypatch.setattr(ftlab.cli, "compare", fake_compare)
    code = main(["compare", "--model", "bert-base-uncased", "--dataset", "sst2", "--epochs", "2", "--seeds", "3"])
    assert code == 2 and seen["model"] == "bert-base-uncased"
    assert "settings" not in seen and seen["overrides"] == {"epochs": 2} and seen["seeds"] == 3


def test_compare_cli_rejects_unknown_strategy(tmp_path, capsys):
    code = main(["compare", "--quick", "--strategies", "magic", "--out", str(tmp_path), "--no-progress"])
    assert code == 2
    assert "unknown strategies ['magic']" in capsys.readouterr().err


@pytest.mark.slow
def test_text_variant_minilm_on_vader_words():
    quick = dataclasses.replace(TEXT_SETTINGS, epochs=1, head_epochs=20)
    results = compare("minilm", "vader_words", settings=quick, max_per_class=100, progress=False)
    assert [r.name for r in results] == ["feature_extraction", "fine_tune_all", "layerwise"]
    fe, full, lw = results
    assert fe.trainable_params == 384 * 2 + 2 and full.trainable_params == full.total_params
    assert 2e-5 <= quick.lr <= 5e-5
    # MiniLM's pretrained [CLS]-pooled features already separate word polarity (chance: 0.5)
    assert fe.test_accuracy > 0.65
    assert len(full.history.epochs) == len(lw.history.epochs) == 1
