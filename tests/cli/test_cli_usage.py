"""The command line as a user meets it: a mistyped command gets a suggestion, and every error line
names the command it comes from (issue 17, part 4)."""
import itertools

from conftest import run_ckpt

COMMANDS = ["inspect", "verify", "convert", "regenerate"]


def close_misspellings(word):
    """Words one edit away from `word`: a swap of neighbours, a dropped and a doubled letter."""
    yield word[1] + word[0] + word[2:]
    yield word[:2] + word[3] + word[2] + word[4:]
    yield word[:-1]
    yield word + word[-1]


def test_a_mistyped_command_gets_the_closest_one():
    for command in COMMANDS:
        for typo in close_misspellings(command):
            r = run_ckpt(typo, "x")
            assert r.returncode == 2, (typo, r.stderr)
            assert r.stderr.splitlines() == [f"sla-ckpt: unknown command '{typo}'; did you mean '{command}'?"], r.stderr
            assert r.stdout == ""


def test_an_unknown_word_lists_the_commands():
    r = run_ckpt("frobnicate")
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert line.startswith("sla-ckpt: unknown command 'frobnicate'; the commands are ")
    for command in COMMANDS:
        assert command in line


def test_control_characters_of_the_word_are_escaped():
    r = run_ckpt("in\x1b]0;x\x07spect")
    assert r.returncode == 2
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_every_error_line_names_its_command(tmp_path):
    cases = [("verify", tmp_path, "--bogus"), ("verify",), ("inspect",), ("convert", tmp_path / "a.pt"),
             ("verify", tmp_path / "missing"), ("inspect", tmp_path / "missing.pt"),
             ("regenerate", tmp_path, "--dtype", "fp8")]
    for args in cases:
        r = run_ckpt(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert lines, args
        for line in lines:
            assert line.startswith(f"sla-ckpt {args[0]}: "), (args, line)


def test_no_command_and_help_and_version():
    r = run_ckpt()
    assert r.returncode == 2 and r.stderr.splitlines()[0].startswith("sla-ckpt: ")
    for args in (["--help"], ["verify", "--help"], ["--version"]):
        r = run_ckpt(*args)
        assert r.returncode == 0 and r.stdout and not r.stderr, args
    assert all(c in run_ckpt("--help").stdout for c in COMMANDS)
    assert list(itertools.islice(close_misspellings("ab"), 1)) == ["ba"]  # the generator itself
