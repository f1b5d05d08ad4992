"""The run-options table: every option round-trips through the file, older files read with
the old defaults, and the click command offers every option."""

import numpy as np
from click.testing import CliRunner

from minids import run_options
from minids.cli.main import main
from minids.run_options import OPTIONS, RUN_OPTIONS, TrainConfig

GIVEN = dict(data="svhn", model="ds-nin", epochs=7, batch_size=96, batch_schedule="multistep:4:3", lr=0.25, momentum=0.7,
             weight_decay=3e-4, zeta=2e-5, zeta_schedule="follow-lr", shrink="coefficients",
             dropout=0.25, lr_schedule="multistep:3,5:0.2", seed=11, extra=False, preprocess="gcn-zca",
             train_size=500, test_size=None, val_size=50, widths=(8, 9, 10, 11, 12, 13, 14, 15),
             dictionary="odct2-dc", tf32=True)


def test_stored_options_round_trip_through_the_file_attributes():
    cfg = TrainConfig(**GIVEN)
    attrs = run_options.to_file(cfg, {"train_size": 500, "test_size": 26032, "val_size": 50})
    assert attrs["dataset"] == "svhn" and attrs["test_size"] == 26032 and not attrs["test_size_asked"]
    assert attrs["widths"].dtype == np.int64
    assert run_options.from_file(attrs) == GIVEN


def test_files_of_earlier_versions_read_with_the_old_defaults():
    cfg = TrainConfig(**GIVEN)
    attrs = run_options.to_file(cfg, {"train_size": 500, "test_size": 26032, "val_size": 50})
    for name in ("shrink", "zeta_schedule", "dropout", "dictionary", "extra", "tf32", "batch_schedule"):
        del attrs[name]
    read = run_options.from_file(attrs)
    assert (read["shrink"], read["zeta_schedule"], read["dropout"]) == ("all", "constant", 0.5)
    assert read["batch_schedule"] == "constant"
    assert (read["dictionary"], read["extra"], read["tf32"]) == ("odct2", True, False)


def test_resumed_run_takes_the_file_options_and_keeps_a_new_epoch_total():
    attrs = run_options.to_file(TrainConfig(**GIVEN), {"train_size": 500, "test_size": 9, "val_size": 50})
    attrs["epochs"] = 7
    resumed = run_options.from_resumed(TrainConfig(resume="r.h5", epochs=12), attrs, "r.h5")
    assert resumed.epochs == 12 and resumed.lr == 0.25 and resumed.widths == GIVEN["widths"]
    assert run_options.from_resumed(TrainConfig(resume="r.h5"), attrs, "r.h5").epochs == 7


def test_every_option_is_a_flag_of_minids_train():
    help_text = CliRunner().invoke(main, ["train", "--help"]).output
    for option in OPTIONS:
        assert (option.flags or (option.flag,))[0] in help_text
    for variable in ("MINIDS_THREADS", "MINIDS_DATA", "MINIDS_MIRROR"):  # the environment, too
        assert f"  {variable}  " in help_text
    assert set(RUN_OPTIONS) == set(GIVEN) - {"epochs", "tf32"}  # a device setting may change on resume
