"""The daemon's quick option parser gives exactly what argparse gives, or steps aside for argparse."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.daemon import OPTIONS, build_parser, parse_args, quick_parse

FLAGS = [row[0] for row in OPTIONS]
WORDS = st.sampled_from([*FLAGS, "sim", "snp", "auto", "block", "toml", "debug", "unix:///tmp/a.sock",
                         "tcp://127.0.0.1:1", "/dev/null", "-x", "--help", "-h", "--tee=sim", "--listen=",
                         "--sim", "--log-level=loud", "--exit-after-ready=1", "crun", ""])


def argparse_result(argv: list[str]) -> dict[str, object] | None:
    try:
        return vars(build_parser().parse_args(argv))
    except SystemExit:
        return None


def test_the_image_start_and_the_bench_start_parse_quickly() -> None:
    bench = ["--tee", "sim", "--sim-config", "/x/sim.json", "--initdata", "/x/i.img", "--listen", "unix:///x/a",
             "--kernel-cmdline", "/dev/null", "--state-dir", "/x/s", "--exit-after-ready"]
    for argv in ([], bench, ["--listen=unix:///a", "--listen", "tcp://127.0.0.1:5", "--grpc-listen", "unix:///g"]):
        quick = quick_parse(argv)
        assert quick is not None and vars(quick) == argparse_result(argv)
    assert quick_parse(["--help"]) is None and quick_parse(["--tee", "nope"]) is None
    assert quick_parse(["--sim", "x"]) is None  # argparse's abbreviations are argparse's business


@settings(max_examples=400, deadline=None)
@given(st.lists(WORDS, max_size=6))
def test_quick_parse_agrees_with_argparse_or_defers(argv: list[str]) -> None:
    quick = quick_parse(argv)
    if quick is not None:
        assert vars(quick) == argparse_result(argv)
    else:
        expected = argparse_result(argv)
        if expected is not None:
            assert vars(parse_args(argv)) == expected
