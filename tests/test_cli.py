import subprocess
import sys

from benchmark.cli import main


def test_run_reconstruction_on_a_folder_then_dry_run_and_report(audio_folder, tmp_path, capsys):
    args = ["run", "reconstruction", "--dataset", "folder", "--dataset-root", str(audio_folder), "--codecs",
            "identity,lowpass", "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "cache"), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "si_sdr" in out and "lowpass" in out
    run_dir = next((tmp_path / "res").iterdir())
    assert (run_dir / "results.csv").exists()
    assert main(args + ["--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "codec lowpass [lowpass]" in plan and "nothing was computed" in plan
    assert main(["report", str(run_dir), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "reconstruction.tex").exists()


def test_bad_override_exits_2_with_message(capsys):
    assert main(["run", "--preset", "smoke", "--set", "nonsense"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_module_entry_point_lists_codecs():
    out = subprocess.run([sys.executable, "-m", "benchmark", "codecs"], capture_output=True, text=True,
                         check=True).stdout
    assert "identity" in out and "compr." in out


def test_library_warnings_reach_the_terminal_as_one_clear_line(monkeypatch, capsys):
    import warnings

    import benchmark.cli as cli

    def noisy(args):
        warnings.warn("covariance is\n   rank-deficient", RuntimeWarning, stacklevel=2)
        return 0

    monkeypatch.setattr(cli, "codecs_command", noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli.main(["codecs"]) == 0
    err = capsys.readouterr().err
    assert "warning [RuntimeWarning]: covariance is rank-deficient" in err
    assert ".py:" not in err  # no source path, no code line
