import pytest

from unetkit.config import Config
from unetkit.errors import ConfigError


def test_yaml_round_trip_keeps_every_field():
    config = Config()
    config.model.depth = 3
    config.data.labels.mode = "values"
    config.data.labels.values = {2: 0, 1: 1, 3: 2}
    config.data.normalize.mean = [0.5, 0.4, 0.3]
    assert Config.from_yaml(config.to_yaml()) == config


def test_mapping_keys_given_as_strings_become_ints():
    config = Config.from_dict({"data": {"labels": {"mode": "values", "values": {"0": 0, "255": 1}}}})
    assert config.data.labels.values == {0: 0, 255: 1}


def test_ints_are_accepted_where_floats_are_expected():
    assert Config.from_dict({"train": {"lr": 1}}).train.lr == 1.0


@pytest.mark.parametrize(
    "data, message",
    [
        ({"model": {"nrom": "batch"}}, "unknown key"),
        ({"model": {"norm": "layer"}}, "not one of"),
        ({"model": {"depth": "four"}}, "expected int"),
        ({"train": {"compile": 1}}, "expected bool"),
        ({"model": {"depth": True}}, "expected int"),
        ({"data": []}, "expected a mapping"),
    ],
)
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(data)


def test_configs_of_earlier_versions_load_without_their_retired_keys():
    old = {"data": {"normalize": {"mode": "meanstd", "scale": 255.0, "mean": [0.5], "std": [0.2]}}}
    normalize = Config.from_dict(old).data.normalize
    assert (normalize.mode, normalize.mean, normalize.std) == ("meanstd", [0.5], [0.2])
    assert "scale" not in Config.from_dict(old).to_dict()["data"]["normalize"]
    with pytest.raises(ConfigError, match="unknown key"):  # retired only where it lived
        Config.from_dict({"model": {"scale": 255.0}})
