"""compare_runs: two run folders' numbers, timings aside, each on its own scale."""

import pytest

from benchmark.results import compare_runs

HEADER = "codec_label,subset,stage,task,metric,representation,head,pooling,seed,value,std,ci_low,ci_high,n,n_failed\n"


def write(folder, rows, items=""):
    folder.mkdir()
    (folder / "results.csv").write_text(HEADER + rows)
    (folder / "items.csv").write_text("codec_label,item,metric,value\n" + items)
    return folder


def test_values_are_relative_timings_left_out_and_spreads_on_the_rows_scale(tmp_path):
    a = write(tmp_path / "a", "x,,reconstruction,,si_sdr,,,,,10.0,0.0,9.0,11.0,8,0\n"
                              "x,,cost,,decode_speed,,,,,50,,,,,\n",
              "x,i1,si_sdr,12.0\nx,i2,si_sdr,0.5\nx,i1,fad_contribution,0.001\n")
    b = write(tmp_path / "b", "x,,reconstruction,,si_sdr,,,,,10.001,1e-15,9.0,11.0,8,0\n"
                              "x,,cost,,decode_speed,,,,,90,,,,,\n",
              "x,i1,si_sdr,12.0\nx,i2,si_sdr,0.5000012\nx,i1,fad_contribution,0.0011\n")
    result = compare_runs(a, b)
    assert not result.unmatched
    # 1e-4 on the value; the std 0 vs 1e-15 is nothing on the row's scale (11); decode_speed ignored
    # the item at 0.5 dB moved by 1.2e-6 on an SI-SDR scale of 12 dB: 1e-7; the contribution has no
    # set-metric row here, so its own scale: 0.0001 / 0.0011
    worst = dict((where.split(": ")[0], size) for size, where in result.worst)
    assert result.max_relative == pytest.approx(1e-4 / 0.0011, rel=1e-6)
    assert worst["row ('x', '', 'reconstruction', '', 'si_sdr', '', '', '', '', 1) value"] == pytest.approx(
        1e-4, rel=1e-3)
    assert worst["row ('x', '', 'reconstruction', '', 'si_sdr', '', '', '', '', 1) std"] < 1e-15
    assert worst["item ('x', 'i2', 'si_sdr', 1) value"] == pytest.approx(1.2e-6 / 12, rel=1e-3)
    assert not result.within(1e-5) and result.within(0.1)


def test_a_contribution_is_measured_on_its_set_metric_and_missing_rows_are_reported(tmp_path):
    a = write(tmp_path / "a", "x,,reconstruction,,fad,,,,,100.0,,,,8,0\n", "x,i1,fad_contribution,0.001\n")
    b = write(tmp_path / "b", "x,,reconstruction,,fad,,,,,100.0,,,,8,0\ny,,reconstruction,,fad,,,,,5.0,,,,8,0\n",
              "x,i1,fad_contribution,0.0011\n")
    result = compare_runs(a, b)
    assert result.max_relative == pytest.approx(1e-4 / 100, rel=1e-6)  # FAD's size, not 0.001's
    assert len(result.unmatched) == 1 and "'y'" in result.unmatched[0]
    assert not result.within(1.0)  # a row in one run only is never agreement


def test_a_value_against_an_empty_cell_is_a_difference(tmp_path):
    a = write(tmp_path / "a", "x,,reconstruction,,si_sdr,,,,,10.0,,,,8,0\n")
    b = write(tmp_path / "b", "x,,reconstruction,,si_sdr,,,,,,,,,8,0\n")
    assert compare_runs(a, b).max_relative == float("inf")


def test_a_folder_without_results_is_an_error_not_an_agreement(tmp_path):
    a = write(tmp_path / "a", "x,,reconstruction,,si_sdr,,,,,10.0,,,,8,0\n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty/results.csv"):
        compare_runs(a, tmp_path / "empty")
