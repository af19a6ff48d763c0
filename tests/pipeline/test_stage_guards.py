"""Two commands on one directory, and a command writing into its own input (issue #31):
one writer per directory (a lock a build shares with the stage commands, released by the
kernel when its holder dies), and ``--out`` equal to or inside an input refused."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import main

ROOT = Path(__file__).resolve().parents[2]

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


@pytest.mark.parametrize("content", [
    "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" * 12,  # /etc/passwd
    "",  # empty
    '{"id": "a", "url": "http://a.example/x", "score": 1, "created_utc": 1500000000}\n' * 5,  # all under 3 karma
])
def test_a_build_whose_inputs_hold_no_link_stops_at_links_saying_what_they_held(tmp_path, capsys, content):
    dump = tmp_path / "passwd"
    dump.write_text(content)
    rc = main(["build", "--no-prefect", "--dump", str(dump), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "links found 0 links in" in err and "passwd" in err and "Traceback" not in err
    if content.startswith("root"):
        assert "24 record(s)" in err and "malformed_json 24" in err
    assert not (tmp_path / "out" / "fetch").exists()  # stopped before fetch


def test_a_later_build_with_no_new_link_goes_on(tmp_path):
    """Links from an earlier build exist: a month with no new link is not an error."""
    from pipeline.core.config import Config
    from pipeline.stages import BY_NAME, BuildContext, _links_finish

    ok = tmp_path / "RS_2017-07.ndjson"
    ok.write_text('{"id":"a1","url":"http://a.example/x","score":5,"created_utc":1500000000,"subreddit":"s",'
                  '"title":"t"}\n')
    empty = tmp_path / "RS_2017-08.ndjson"
    empty.write_text("")
    out = tmp_path / "out"
    ctx = BuildContext(out, Config(), dumps=(str(ok),), progress=False)
    assert _links_finish(ctx, [BY_NAME["links"].run_part(ctx, str(ok))])["out"] == 1
    ctx = BuildContext(out, Config(), dumps=(str(empty),), progress=False)
    assert _links_finish(ctx, [BY_NAME["links"].run_part(ctx, str(empty))])["out"] == 0  # no error


@pytest.mark.parametrize("typo, near", [("biuld", "build"), ("fecth", "fetch"), ("dedupe", "dedup"),
                                         ("trian", "train")])
def test_a_mistyped_command_names_the_nearest(capsys, typo, near):
    assert main([typo, "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert f"unknown command {typo!r}; did you mean" in err and near in err


@pytest.mark.parametrize("columns, bad", [
    ({"id": [1, 2], "text": ["harbour " * 50, "mountain " * 50]}, "'id' is int64"),
    ({"id": ["a", "b"], "text": [1, 2]}, "'text' is int64"),
    ({"id": ["a", "b"], "text": [["x"], ["y"]]}, "'text' is list"),
    ({"id": ["a", "b"], "text": [b"x", b"y"]}, "'text' is binary"),
    ({"id": ["a", "b"], "text": ["x " * 300, "y " * 300], "url": [1, 2]}, "'url' is int64"),
    ({"id": ["a", "b"], "text": ["x " * 300, "y " * 300], "score": ["high", "low"]}, "'score' is string"),
    ({"id": ["a", "b"], "text": ["x " * 300, "y " * 300], "created_utc": [1.5, 2.5]}, "'created_utc' is double"),
    ({"id": ["a", "b"]}, "need the column(s) text"),
])
@pytest.mark.parametrize("command", ["filter", "dedup", "shard"])
def test_documents_with_a_wrong_column_type_get_one_sentence_naming_file_and_column(tmp_path, capsys, columns, bad,
                                                                                     command):
    d = tmp_path / "docs"
    d.mkdir()
    pq.write_table(pa.table(columns), d / "part-0.parquet")
    rc = main([command, "--in", str(d), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and bad in err and "part-0.parquet" in err and "Traceback" not in err, err


def test_a_column_of_nulls_and_large_strings_are_accepted(tmp_path):
    from pipeline.core.schema import check_document_schema

    check_document_schema(pa.schema([("id", pa.large_string()), ("text", pa.string()), ("score", pa.null()),
                                     ("created_utc", pa.int32()), ("subreddits", pa.list_(pa.large_string()))]), "x")


def test_the_shared_lock_names_its_holder_and_frees_itself_when_the_holder_dies(tmp_path):
    # the lock under the build's directory lock and the fetch's partition locks
    from pipeline.core.io import LockHeld, exclusive_lock

    path = tmp_path / "sub" / ".x.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from pipeline.core.io import exclusive_lock\n"
        "with exclusive_lock(sys.argv[2], 'pid 42 on hostA'):\n"
        "    print('held', flush=True); time.sleep(60)"), str(ROOT), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld) as err:
            with exclusive_lock(path, "me"):
                pass
        assert err.value.stamp == "pid 42 on hostA" and err.value.path == path
    finally:
        holder.kill()
        holder.wait()
    with exclusive_lock(path, "me"):  # the kernel freed it with its holder
        assert path.read_text() == "me"
    # an error inside the lock is not taken for the lock being held
    with pytest.raises(ZeroDivisionError):
        with exclusive_lock(path, "me"):
            1 / 0
