"""The miner's config and ``deoss-miner init``: clear errors that name the key."""

import stat
from pathlib import Path

import pytest

from chain_client.keys import load_key_file
from chain_client.params import ConfigError
from miner_agent.cli import main
from miner_agent.config import MinerConfig, file_probe, render_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "miner.toml"
    path.write_text(text)
    return path


def test_round_trip(tmp_path: Path) -> None:
    config = MinerConfig(
        data_dir=tmp_path,
        declared_space=10,
        chain_rpc="http://127.0.0.1:1",
        free_space_probe="file:/tmp/x",
        faucet=True,
    )
    loaded = MinerConfig.load(write(tmp_path, render_config(config)))
    assert loaded.declared_space == 10 and loaded.faucet and loaded.data_dir == tmp_path


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("", "[miner]"),
        ('[miner]\ndata_dir = "/x"\nchain_rpc = "http://h:1"\n', "miner.declared_space"),
        (
            '[miner]\ndata_dir = "/x"\ndeclared_space = "big"\nchain_rpc = "http://h:1"\n',
            "miner.declared_space",
        ),
        (
            '[miner]\ndata_dir = "/x"\ndeclared_space = 1\nchain_rpc = "http://h:1"\ncolour = 1\n',
            "miner.colour",
        ),
        (
            '[miner]\ndata_dir = "/x"\ndeclared_space = 0\nchain_rpc = "http://h:1"\n',
            "miner.declared_space",
        ),
        (
            '[miner]\ndata_dir = "/x"\ndeclared_space = 1\nchain_rpc = "ftp://h"\n',
            "miner.chain_rpc",
        ),
        (
            '[miner]\ndata_dir = "/x"\ndeclared_space = 1\nchain_rpc = "http://h:1"\n'
            'listen = "x"\n',
            "miner.listen",
        ),
        (
            '[miner]\ndata_dir = "/x"\ndeclared_space = 1\nchain_rpc = "http://h:1"\ndev = 1\n',
            "miner.dev",
        ),
        ("[miner\n", "(file)"),
    ],
)
def test_bad_configs_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        MinerConfig.load(path)
    assert error.value.key == key and error.value.source == str(path)


def test_file_probe_reads_the_simulated_free_space(tmp_path: Path) -> None:
    free = tmp_path / "free"
    free.write_text("12345\n")
    assert file_probe(free)(tmp_path) == 12345


def test_init_writes_config_and_a_private_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "m"
    args = [
        "init",
        "--dir",
        str(directory),
        "--declared-space",
        "65536",
        "--chain-rpc",
        "http://127.0.0.1:9",
    ]
    assert main(args) == 0
    config = MinerConfig.load(directory / "miner.toml")
    assert config.declared_space == 65536 and config.free_disk_floor == 2 * 1024**3
    key = load_key_file(directory / "key.json")
    assert stat.S_IMODE((directory / "key.json").stat().st_mode) == 0o600
    assert main(args) == 2  # no silent overwrite
    assert "exists" in capsys.readouterr().err
    assert load_key_file(directory / "key.json") == key
    assert main([*args[:-1], "not-a-url", "--force"]) == 2
    assert load_key_file(directory / "key.json") == key  # a refused init changed nothing
