"""Two commands on one directory, and a command writing into its own input (issue #31):
one writer per directory (a lock a build shares with the stage commands, released by the
kernel when its holder dies), and ``--out`` equal to or inside an input refused."""

import os
import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import main

HOLD = ("import sys, time; from pipeline.build import dir_lock\n"
        "with dir_lock(sys.argv[1], sys.argv[2]):\n"
        "    print('held', flush=True); time.sleep(120)\n")


def _docs(folder):
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ["a", "b"], "url": ["http://a.example/", "http://b.example/"],
                             "text": ["harbour story " * 80, "mountain story " * 80]}), folder / "part-0.parquet")
    return folder


@pytest.mark.parametrize("argv", [
    ["filter", "--in", "{d}", "--out", "{d}"],
    ["filter", "--in", "{d}", "--out", "{d}/filtered"],
    ["dedup", "--in", "{d}", "--out", "{d}/./"],
    ["shard", "--in", "{d}", "--out", "{d}/shards"],
    ["tokenize", "--in", "{d}", "--out", "{d}/tok"],
])
def test_out_equal_to_or_inside_the_input_is_refused_before_any_work(tmp_path, capsys, argv):
    d = _docs(tmp_path / "docs")
    before = sorted(p.name for p in d.rglob("*"))
    rc = main([a.format(d=d) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and "would overwrite what it reads" in err and str(d) in err
    assert sorted(p.name for p in d.rglob("*")) == before  # nothing written, nothing lost


def test_a_sibling_output_directory_is_fine(tmp_path, capsys):
    d = _docs(tmp_path / "docs")
    assert main(["filter", "--in", str(d), "--out", str(tmp_path / "filtered"), "--set", "filter.min_length=1",
                 "--set", "filter.languages=['en']"]) == 0


@pytest.mark.parametrize("command", ["dedup", "filter", "fetch"])
def test_a_second_command_on_a_directory_in_use_is_refused_and_runs_once_the_holder_dies(tmp_path, capsys, command):
    """A build's stage (or another command) holds OUT; the command says who holds it and
    exits 2 without touching OUT; SIGKILL the holder and the same command runs."""
    d = _docs(tmp_path / "docs")
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "build's fetch stage"], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        assert holder.stdout.readline().strip() == "held"
        if command == "fetch":
            argv = ["fetch", "--links", str(tmp_path / "nolinks"), "--out", str(out)]
        else:
            argv = [command, "--in", str(d), "--out", str(out)]
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2 and "another build's fetch stage is running on" in err and f"pid {holder.pid}" in err
        assert sorted(p.name for p in out.iterdir()) == [".webtext.lock"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    if command != "fetch":
        assert main([command, "--in", str(d), "--out", str(out), "--set", "filter.min_length=1"]) == 0


def test_a_build_is_refused_at_a_stage_whose_directory_a_stage_command_holds(tmp_path):
    """``webtext links --out OUT/links`` running: a build on OUT is refused at its links
    stage, naming the holder; once it ends the build runs."""
    from pipeline.build import BuildLocked, dir_lock, run_build
    from pipeline.core.config import Config

    dump = tmp_path / "RS_2017-07.ndjson"
    dump.write_text('{"id":"a1","url":"http://a.example/x","score":5,"created_utc":1500000000,"subreddit":"s",'
                    '"title":"t"}\n')
    out = tmp_path / "out"
    with dir_lock(out / "links", "links"):
        with pytest.raises(BuildLocked, match="another links is running on .*links"):
            run_build([dump], out, Config())
    assert not list((out / "links").glob("runs/*"))
