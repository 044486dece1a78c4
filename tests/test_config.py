import pytest

from kml.config import ConfigError, RunConfig, load_run_config, run_config_from_dict, save_run_config


def test_defaults_are_the_papers_maml_settings():
    config = RunConfig(method="mmaml", modes=("miniimagenet",))
    assert (config.task.ways, config.task.queries) == (5, 15)
    assert (config.maml.inner_steps, config.maml.inner_lr, config.maml.grad_clamp) == (5, 0.05, 20.0)
    assert not config.maml.first_order
    assert config.model.kml_form == "residual" and config.model.query_embedding == "support"
    assert (config.train.iterations, config.train.meta_batch_size) == (60000, 10)
    assert config.transference.lookahead == "sgd"  # the paper's plain gradient step, not the optimizer's


def test_modes_take_the_canonical_order_and_family_follows_the_method():
    config = run_config_from_dict({"method": "mprotonet_kml", "modes": ["aircraft", "omniglot", "fc100"]})
    assert config.modes == ("omniglot", "fc100", "aircraft")
    assert config.family == "protonet"
    assert RunConfig(method="mmaml_kml", modes=("fc100",)).family == "maml"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"method": "maml", "modes": ["fc100"], "train": {"iteratons": 5}}, "train.iteratons: unknown key"),
        ({"method": "maml", "modes": ["fc100"], "maml": {"inner_lr": "fast"}},
         "maml.inner_lr: expected a number"),
        ({"method": "maml", "modes": ["fc100"], "train": {"iterations": True}}, "expected an integer"),
        ({"method": "maml", "modes": ["fc100"], "model": {"kml_form": "J+M"}}, "model.kml_form"),
        ({"method": "kml", "modes": ["fc100"]}, "unknown method 'kml'"),
        ({"method": "maml", "modes": ["imagenet"]}, "unknown mode 'imagenet'"),
        ({"method": "maml", "modes": ["fc100", "fc100"]}, "lists a mode twice"),
        ({"modes": ["fc100"]}, "method"),
        ({"method": "maml", "modes": ["fc100"], "transference": {"step_size": {"mamll": 0.1}}},
         "transference.step_size.mamll: unknown key"),
        ({"method": "maml", "modes": ["fc100"], "transference": {"lookahead": "momentum"}},
         "transference.lookahead"),
    ],
)
def test_bad_values_are_rejected_with_the_key_named(values, message):
    with pytest.raises(ConfigError, match=message):
        run_config_from_dict(values)


def test_round_trip_through_yaml(tmp_path):
    config = run_config_from_dict({
        "method": "mmaml_kml", "modes": ["fc100", "miniimagenet"],
        "task": {"shots": 5}, "optim": {"lr_decay_every": 10000},
        "data": {"files": {"fc100": "data/processed/fc100-84.h5"}},
        "train": {"extra_checkpoints": [5000, 10000]},
    })
    save_run_config(config, tmp_path / "run.yaml")
    assert load_run_config(tmp_path / "run.yaml") == config


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text("method: [unclosed")
    with pytest.raises(ConfigError, match="run.yaml: not valid YAML"):
        load_run_config(bad)


@pytest.mark.parametrize("value", [False, True, "released"])
def test_protonet_transductive_takes_a_boolean_or_released_and_keeps_it_through_yaml(value, tmp_path):
    config = run_config_from_dict(
        {"method": "protonet", "modes": ["fc100"], "protonet": {"transductive": value}})
    assert config.protonet.transductive is value or config.protonet.transductive == value == "released"
    save_run_config(config, tmp_path / "run.yaml")
    assert load_run_config(tmp_path / "run.yaml") == config


@pytest.mark.parametrize("value", [1, 0, "true", "Released", None])
def test_protonet_transductive_rejects_anything_else_in_one_line_naming_the_choices(value):
    with pytest.raises(ConfigError) as error:
        run_config_from_dict({"method": "protonet", "modes": ["fc100"], "protonet": {"transductive": value}})
    assert str(error.value) == f"protonet.transductive: {value!r} is not one of false, true or 'released'"
