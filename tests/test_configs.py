"""Every paper experiment ships as a valid config, and a bad config fails before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmms_vreason.benchmarks import TABLE1_COLUMNS
from lmms_vreason.experiments.collate import averages
from lmms_vreason.experiments.configs import (
    PAPER_KEYS,
    ConfigError,
    ExperimentConfig,
    check_config_set,
    config_from_mapping,
    configs_from_mapping,
    load_config,
    load_configs,
)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"
ALL_TASKS = [c.task for c in TABLE1_COLUMNS]
LR_GRID = [5e-5, 1e-4, 1.5e-4, 2e-4, 2.5e-4, 3e-4, 3.5e-4, 4e-4, 4.5e-4, 5e-4]
LR_NAMES = ["5e-5", "1e-4", "1.5e-4", "2e-4", "2.5e-4", "3e-4", "3.5e-4", "4e-4", "4.5e-4", "5e-4"]


@pytest.fixture(scope="module")
def shipped() -> dict[str, ExperimentConfig]:
    return {c.name: c for c in load_configs([CONFIG_DIR])}


def minimal(**overrides) -> dict:
    data = {
        "name": "x",
        "reproduces": "Table 1, a row",
        "paper": {"mmvu": 61.3},
        "model_args": {"pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "vreason": True},
        "tasks": ["mmvu"],
    }
    data.update(overrides)
    return data


def write_yaml(tmp_path: Path, data: dict, stem: str | None = None) -> Path:
    path = tmp_path / f"{stem or data.get('name', 'x')}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- shipped configs


def test_every_shipped_config_validates(shipped: dict[str, ExperimentConfig]) -> None:
    files = list(CONFIG_DIR.glob("*.yaml"))
    # One config per file, or one per lr of a file's lr_grid.
    expected = sum(len(yaml.safe_load(f.read_text()).get("lr_grid", [None])) for f in files)
    assert len(shipped) == expected >= 80
    # 26 single paper settings + 6 lr grids (the grid members are not files) + 3 Qwen3-VL and 3
    # Qwen3.5 extensions
    assert len(files) == 38
    for config in shipped.values():
        assert config.reproduces.strip()
        assert config.source is not None and config.source.stem == (config.lr_grid_group or config.name)
        config.backend_args  # noqa: B018 - parses again; raises if anything is off


def test_table1_rows_and_lr_grids(shipped: dict[str, ExperimentConfig]) -> None:
    for setting, frames, px in (("3b-32f128", 32, 128), ("7b-16f256", 16, 256), ("7b-32f128", 32, 128)):
        base = shipped[f"t1-{setting}-base"]
        assert base.backend_args.vreason is False
        assert base.backend_args.max_frames == frames and base.backend_args.max_pixels == px * 28 * 28
        assert list(base.tasks) == ALL_TASKS
        for variant in ("vreason", "lite"):
            group = f"t1-{setting}-{variant}"
            members = [c for c in shipped.values() if c.lr_grid_group == group]
            assert sorted(c.lr for c in members) == pytest.approx(LR_GRID)
            assert sorted(c.name for c in members) == sorted(f"{group}-lr{lr}" for lr in LR_NAMES)
            for member in members:
                args = member.backend_args
                assert args.vreason and args.lite == (variant == "lite")
                assert args.step_size == 4 and args.objective == "switch"
                assert member.baseline == base.name and list(member.tasks) == ALL_TASKS
    for setting in ("16f256", "32f128"):
        r1 = shipped[f"t1-videor1-7b-{setting}"]
        assert r1.backend_args.pretrained == "Video-R1/Video-R1-7B"
        assert r1.backend_args.vreason is False


def test_paper_numbers_transcribed(shipped: dict[str, ExperimentConfig]) -> None:
    # docs/method.md §4 reference rows.
    assert dict(shipped["t1-7b-32f128-base"].paper) == {
        "vsi_acc": 33.8,
        "vsi_mra": 22.3,
        "videommmu": 45.8,
        "mmvu": 61.3,
        "mvbench": 60.7,
        "tempcompass": 72.4,
        "videomme": 53.7,
        "avg": 50.0,
        "avg_wo_mra": 54.6,
    }
    assert shipped["t1-7b-32f128-lite-lr3e-4"].paper["mmvu"] == 65.0
    assert "vsi_acc" not in shipped["t1-7b-32f128-vreason-lr3e-4"].paper  # blank in the paper
    assert shipped["t1-videor1-7b-32f128"].paper["vsi_mra"] == 39.2
    # Wherever the paper prints all numbers of a row, its averages agree with them up to the
    # paper's rounding (it averages unrounded values; its 7B-16/256 Lite row is 0.17 off).
    for config in shipped.values():
        if all(k in config.paper for k in PAPER_KEYS):
            ours = averages(config.paper)
            assert ours["avg"] == pytest.approx(config.paper["avg"], abs=0.2), config.name
            assert ours["avg_wo_mra"] == pytest.approx(config.paper["avg_wo_mra"], abs=0.2), config.name


def test_tables_2_3_4_8_and_figure_4(shipped: dict[str, ExperimentConfig]) -> None:
    for size, base_v, vr_v in (("32b", 69.0, 72.0), ("72b", 72.6, 73.0)):
        base, vr = shipped[f"t2-{size}-base"], shipped[f"t2-{size}-vreason"]
        assert base.backend_args.device_map == "auto" and base.model_parallel
        assert base.paper["mmvu"] == base_v and vr.paper["mmvu"] == vr_v
        assert vr.backend_args.vreason and size.upper() in vr.backend_args.pretrained
        assert list(vr.tasks) == ["mmvu"]
    t3 = {n: c for n, c in shipped.items() if n.startswith("t3-")}
    assert len(t3) == 8
    expected = {
        "t3-minp-t0.3": 61.8,
        "t3-minp-t0.3-lite": 63.8,
        "t3-toph-t0.3": 60.2,
        "t3-toph-t0.3-lite": 61.1,
        "t3-minp-t1.0": 55.0,
        "t3-minp-t1.0-lite": 61.3,
        "t3-toph-t1.0": 62.2,
        "t3-toph-t1.0-lite": 62.6,
    }
    for name, value in expected.items():
        config = t3[name]
        assert config.paper == {"mmvu": value}
        assert config.gen_kwargs["top_p"] == 0.9
        assert config.gen_kwargs["temperature"] == float(name.split("-t")[-1].split("-")[0])
        assert ("min_p" in config.gen_kwargs) == ("minp" in name)
        assert ("top_h" in config.gen_kwargs) == ("toph" in name)
        assert config.backend_args.lite == name.endswith("-lite")
    assert shipped["t4-min-entropy-lite"].backend_args.objective == "min_entropy"
    assert shipped["t4-max-entropy-lite"].backend_args.objective == "max_entropy"
    prune = shipped["t8-prune-only"].backend_args
    assert prune.prune_only and prune.lite and not prune.vreason
    assert shipped["t8-lite-lr3e-4"].lr == 3e-4 and shipped["t8-lite-lr3e-4"].paper["avg"] == 51.3
    assert sorted(c.backend_args.step_size for n, c in shipped.items() if n.startswith("f4-")) == [
        1,
        2,
        4,
        8,
        16,
    ]


def test_qwen3_vl_extension_configs(shipped: dict[str, ExperimentConfig]) -> None:
    """Not in the paper: Qwen3-VL-8B baseline / V-Reason / Lite at 32 frames and 128 tokens per frame."""
    rows = {n: c for n, c in shipped.items() if n.startswith("x-qwen3-8b-")}
    assert sorted(rows) == [f"x-qwen3-8b-32f128-{v}" for v in ("base", "lite", "vreason")]
    for name, config in rows.items():
        args = config.backend_args
        assert config.model == "qwen3_vl_vreason" and args.pretrained == "Qwen/Qwen3-VL-8B-Instruct"
        assert config.reproduces.startswith("Extension:") and dict(config.paper) == {}
        assert args.max_frames == 32 and args.nframes is None  # Video-R1's sampling, as the paper rows
        assert args.min_pixels == args.max_pixels == 128 * 32 * 32  # 128 tokens of 32 x 32 px per frame
        assert list(config.tasks) == ALL_TASKS
        assert (args.vreason, args.lite) == {
            "base": (False, False),
            "vreason": (True, False),
            "lite": (True, True),
        }[name.rsplit("-", 1)[1]]
        assert config.baseline in (None, "x-qwen3-8b-32f128-base")


def test_qwen3_5_extension_configs(shipped: dict[str, ExperimentConfig]) -> None:
    """Not in the paper: Qwen3.5-9B baseline / V-Reason / Lite, 128 tokens per frame, thinking off."""
    rows = {n: c for n, c in shipped.items() if n.startswith("x-qwen3.5-")}
    assert sorted(rows) == [f"x-qwen3.5-9b-32f128-{v}" for v in ("base", "lite", "vreason")]
    for name, config in rows.items():
        args = config.backend_args
        assert config.model == "qwen3_5_vreason" and args.pretrained == "Qwen/Qwen3.5-9B"
        assert config.reproduces.startswith("Extension:") and dict(config.paper) == {}
        assert args.max_frames == 32 and args.nframes is None
        assert args.min_pixels == args.max_pixels == 128 * 32 * 32
        assert args.enable_thinking is False and list(config.tasks) == ALL_TASKS
        assert (args.vreason, args.lite) == {
            "base": (False, False),
            "vreason": (True, False),
            "lite": (True, True),
        }[name.rsplit("-", 1)[1]]
        assert config.baseline in (None, "x-qwen3.5-9b-32f128-base")


def test_shipped_baselines_exist(shipped: dict[str, ExperimentConfig]) -> None:
    for config in shipped.values():
        if config.baseline is not None:
            assert config.baseline in shipped, config.name


# ----------------------------------------------------------------------------- failures name the key


def test_unknown_top_level_key_fails_naming_it(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, minimal(learning_rate=1e-4))
    with pytest.raises(ConfigError, match="unknown top-level key.*learning_rate"):
        load_config(path)


def test_unknown_model_arg_fails_naming_it(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, minimal(model_args={"pretrained": "x/y", "lrr": 1e-4}))
    with pytest.raises(ConfigError, match="unknown model argument.*lrr"):
        load_config(path)


def test_prune_only_with_vreason_fails_naming_it(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, minimal(model_args={"vreason": True, "lite": True, "prune_only": True}))
    with pytest.raises(ConfigError, match="prune_only"):
        load_config(path)
    ok = write_yaml(
        tmp_path, minimal(name="ok", model_args={"vreason": False, "lite": True, "prune_only": True})
    )
    assert load_config(ok).backend_args.prune_only


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"gen_kwargs": {"temprature": 0.3}}, "gen_kwargs: unsupported generation kwargs.*temprature"),
        ({"gen_kwargs": {"top_h": 1.5}}, "top_h"),
        ({"gen_kwargs": {"max_new_tokens": "many"}}, "max_new_tokens"),
        ({"gen_kwargs": {"do_sample": True, "temperature": 0}}, "contradictory"),
        ({"tasks": ["mmvu", "videomme"]}, "unknown task.*videomme"),
        ({"paper": {"mmvu_acc": 61.3}}, "unknown paper key.*mmvu_acc"),
        ({"paper": {"mmvu": 0.613e3}}, r"paper mmvu"),
        ({"model": "qwen2_5_vl"}, "model 'qwen2_5_vl' is not supported"),
        ({"model_args": {"pretrained": "a,b"}}, "pretrained"),
        ({"gen_kwargs": {"until": "</answer>,"}}, "until.*cannot go through --gen_kwargs"),
        ({"gen_kwargs": {"until": ["a", "b"]}}, "until.*cannot go through --gen_kwargs"),
        ({"model_args": {"vreason": False}, "lr_grid_group": "g"}, "lr_grid_group needs vreason"),
        ({"reproduces": " "}, "reproduces"),
        ({"model_args": {"batch_size": 4}}, r"batch_size: lmms-eval sets these.*-- --batch_size"),
    ],
)
def test_bad_values_fail_naming_the_key(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_mapping(minimal(**overrides))


def test_missing_key_and_name_stem_mismatch(tmp_path: Path) -> None:
    data = minimal()
    del data["tasks"]
    with pytest.raises(ConfigError, match="missing required key.*tasks"):
        config_from_mapping(data)
    path = write_yaml(tmp_path, minimal(name="t1-a"), stem="t1-b")
    with pytest.raises(ConfigError, match="must equal the file name stem"):
        load_config(path)


def test_lr_grid_expands_into_members_that_differ_only_in_the_lr(tmp_path: Path) -> None:
    grid = minimal(name="g", lr_grid=[5.0e-5, 1.5e-4, 3.0e-4], baseline="b", gen_kwargs={"temperature": 0.3})
    grid["model_args"]["step_size"] = 8
    path = write_yaml(tmp_path, grid)
    members = load_configs([path])
    assert [m.name for m in members] == ["g-lr5e-5", "g-lr1.5e-4", "g-lr3e-4"]
    assert [m.lr for m in members] == [5e-5, 1.5e-4, 3e-4]
    assert [m.model_args["lr"] for m in members] == [5e-5, 1.5e-4, 3e-4]
    assert all(m.lr_grid_group == "g" and m.source == path for m in members)
    assert members[1].reproduces == "Table 1, a row; this member lr=1.5e-4"
    # A member cannot differ from its siblings in anything but the lr: all come from one definition.
    first = members[0]
    for member in members[1:]:
        values = member.backend_args.model_dump()
        assert values.pop("lr") != first.lr
        assert values == {k: v for k, v in first.backend_args.model_dump().items() if k != "lr"}
        assert member.backend_args.step_size == 8
        assert (member.tasks, member.paper, member.gen_kwargs) == (first.tasks, first.paper, first.gen_kwargs)
        assert member.baseline == "b" and member.notes == first.notes
    with pytest.raises(ConfigError, match="holds an lr grid of 3 configs"):
        load_config(path)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"lr_grid": [1e-4, 2e-4, 1.0e-4]}, "lr_grid lists lr 1e-4 twice"),
        (
            {"lr_grid": [1e-4], "model_args": {"vreason": True, "lr": 3e-4}},
            "model_args lr=0.0003 next to lr_grid",
        ),
        ({"lr_grid": [1e-4], "model_args": {"vreason": False}}, "lr_grid needs vreason=true"),
        ({"lr_grid": []}, "lr_grid must be a non-empty list"),
        ({"lr_grid": [1e-4, -1e-4]}, r"lr_grid\[1\]=-0.0001"),
        ({"lr_grid": ["1e-4"]}, r"lr_grid\[0\]='1e-4'"),  # YAML 1.1 reads 1e-4 (no dot) as a string
        ({"lr_grid": [1e-4], "lr_grid_group": "other"}, "lr_grid_group is set by lr_grid"),
        ({"lr_grid": [1e-4], "learning_rate": 1}, "unknown top-level key.*learning_rate"),
    ],
)
def test_bad_lr_grid_fails_naming_it(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        configs_from_mapping(minimal(**overrides))


def test_grid_members_are_not_written_by_hand_and_names_stay_unique(tmp_path: Path) -> None:
    # lr_grid_group in a file would allow members that drift apart: only lr_grid makes a grid.
    with pytest.raises(ConfigError, match="lr_grid_group is not written in a config file"):
        load_config(write_yaml(tmp_path, minimal(name="m", lr_grid_group="g")))
    with pytest.raises(ConfigError, match="must equal the file name stem"):
        load_configs([write_yaml(tmp_path, minimal(name="g", lr_grid=[1e-4]), stem="h")])
    grid = write_yaml(tmp_path, minimal(name="g", lr_grid=[1e-4, 2e-4]))
    (tmp_path / "other").mkdir()
    clash = write_yaml(tmp_path / "other", minimal(name="g-lr1e-4"))
    with pytest.raises(ConfigError, match="two configs are named 'g-lr1e-4'"):
        load_configs([grid, clash])
    label = write_yaml(tmp_path / "other", minimal(name="g"))
    with pytest.raises(ConfigError, match="lr_grid_group 'g' is also a config name"):
        load_configs([grid, label])
    single = config_from_mapping(minimal(name="a"))
    with pytest.raises(ConfigError, match="two configs are named 'a'"):
        check_config_set([single, single])


def test_config_is_frozen_and_renders_lmms_eval_strings() -> None:
    config = config_from_mapping(
        minimal(
            model_args={"pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "vreason": True, "lr": 3.0e-4},
            gen_kwargs={"temperature": 0.3, "do_sample": True},
        )
    )
    assert config.model_args_string == "pretrained=Qwen/Qwen2.5-VL-7B-Instruct,vreason=true,lr=0.0003"
    assert config.gen_kwargs_string == "temperature=0.3,do_sample=true"
    with pytest.raises(TypeError):
        config.model_args["lr"] = 1.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        config.name = "y"  # type: ignore[misc]
