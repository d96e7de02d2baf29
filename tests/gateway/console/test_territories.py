"""The command the territories page shows is one ``deoss territory`` takes, with the
values the form asked for (docs/console.md §4.3)."""

import shlex

import pytest

from gateway.cli import build_parser
from gateway.console.territories import territory_command, tokens


@pytest.mark.parametrize(
    ("action", "size", "days"), [("mint", 2, 30), ("expand", 3, None), ("renew", None, 7)]
)
def test_the_territory_command_is_one_the_cli_takes(
    action: str, size: int | None, days: int | None
) -> None:
    command = territory_command(
        action, "t.1", size=size, days=days, chain_rpc="http://127.0.0.1:9944"
    )
    argv = shlex.split(command)
    assert argv[0] == "deoss"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.territory_command, args.name) == ("territory", action, "t.1")
    assert args.chain_rpc == "http://127.0.0.1:9944" and args.key == "KEY_FILE"
    assert getattr(args, "size", None) == size
    assert getattr(args, "days", None) == days


def test_tokens_are_written_as_the_cli_writes_them() -> None:
    assert [tokens(n) for n in (30 * 10**18, 10**18 // 2, 10**15, 0)] == ["30", "0.5", "0.001", "0"]
