"""Bad input: one clear line on stderr naming the input and the fix, exit code 2, nothing written."""

import pytest

from conftest import run_cli


@pytest.mark.parametrize("args, words", [
    (["--task", "drag", "--n", "12X"], ["--n", "12X", "1.5k"]),
    (["--task", "drag", "--n", "-3"], ["--n"]),
    (["--task", "drag", "--n", "0"], ["--n", "at least 1"]),
    (["--task", "flyy"], ["flyy", "choose one of"]),
    (["--task", "drag", "--ops", "translate,teleport"], ["--ops", "teleport", "translate,scale,rotate"]),
    (["--task", "drag", "--size", "500"], ["--size 500", "multiple of 16"]),
    (["--task", "drag", "--image-format", "gif"], ["--image-format", "gif"]),
    (["--task", "drag", "--shard-size", "lots"], ["--shard-size", "lots"]),
    (["--task", "drag", "--seed", "-1"], ["--seed"]),
    (["--task", "drag", "--assets", "/nonexistent/manifests"], ["/nonexistent/manifests", "collage assets build"]),
    (["--pipeline", "/nonexistent.yaml"], ["--pipeline", "/nonexistent.yaml"]),
    ([], ["--task or --pipeline"]),
    (["--task", "drag", "--frobnicate"], ["--frobnicate"]),
])
def test_bad_generate_input(tmp_path, args, words):
    out = tmp_path / "out"
    result = run_cli("generate", *args, "--out", str(out), "--n", "10") if "--n" not in args else \
        run_cli("generate", *args, "--out", str(out))
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in result.stderr
    assert not out.exists(), "bad input must write nothing"


def test_missing_out_is_a_usage_error(tmp_path):
    result = run_cli("generate", "--task", "drag")
    assert result.returncode == 2 and "--out" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_address_with_no_cluster_is_one_line(tmp_path):
    result = run_cli("generate", "--task", "drag", "--n", "5", "--out", str(tmp_path / "o"), "--address", "127.0.0.1:1",
                     timeout=180)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --address 127.0.0.1:1")


def test_verify_of_a_non_run(tmp_path):
    result = run_cli("verify", str(tmp_path))
    assert result.returncode == 1 and "no run.json" in result.stderr


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("generate", "verify", "assets"):
        assert command in result.stdout


@pytest.mark.parametrize("args, words", [
    (["--task", "edit", "--option", "add_background=moon"], ["add_background", "moon", "blank, scene, mixed"]),
    (["--task", "edit", "--option", "colour=red"], ["colour", "add_background"]),
    (["--task", "edit", "--option", "nonsense"], ["--option", "KEY=VALUE"]),
    (["--task", "reference", "--option", "depth_model=/nope"], ["depth_model", "/nope", "save_pretrained"]),
])
def test_bad_task_options(tmp_path, args, words):
    out = tmp_path / "out"
    result = run_cli("generate", *args, "--n", "5", "--out", str(out))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr
    assert not out.exists()


def test_out_that_is_a_file_or_a_foreign_folder(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    result = run_cli("generate", "--task", "drag", "--n", "5", "--out", str(a_file), "--backend", "local")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "--out" in result.stderr
    assert a_file.read_text() == "mine"
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"x")
    result = run_cli("generate", "--task", "drag", "--n", "5", "--out", str(folder), "--backend", "local")
    assert result.returncode == 2 and "not a collage run" in result.stderr and "holiday.jpg" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]
