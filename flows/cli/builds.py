"""Whole builds and the rest: build, stages, serve, report, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.cli.options import FORMATTER, _add_config, _config, register

# --- whole builds and the demo ------------------------------------------------------------


def _heartbeats() -> None:
    """Flow runs send a heartbeat every 30 s (Prefect's minimum), so Prefect's zombie
    detection (flows/lifecycle.py) can end a run whose process is gone. Before Prefect
    is imported: its settings are read then."""
    import os

    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")


def _add_runner(p) -> None:
    p.add_argument("--task-runner", choices=["threads", "dask"], default="threads",
                   help="where per-file tasks run: threads in this process, or a Dask cluster")
    p.add_argument("--dask-address", metavar="tcp://HOST:PORT", help="an existing Dask scheduler (default: start a local cluster)")
    p.add_argument("--workers", type=int, default=None, help="threads, or local Dask worker processes (default: all cores)")


@register
def add_build(sub):
    p = sub.add_parser(
        "build", formatter_class=FORMATTER, help="a whole corpus build (Prefect flow build-corpus)",
        description="Runs the build-corpus flow: links -> fetch -> extract -> filter -> dedup -> shards over the dump "
        "files (paths or glob patterns) into OUT/{links,fetch,extract,filter,dedup,shards}, writes OUT/funnel.json and "
        "a Prefect artifact with the funnel. Incremental: re-running with new months does only the new work, and a "
        "killed run resumes. Without PREFECT_API_URL, Prefect starts a temporary local server for the run.",
    )
    p.add_argument("--dump", action="extend", nargs="+", default=[], metavar="FILE_OR_GLOB",
                   help="dump files or glob patterns (quoted); may be repeated")
    p.add_argument("--urls", action="extend", nargs="+", default=[], metavar="FILE_OR_GLOB",
                   help="URL lists (as `webtext links --urls`), with or instead of dumps; may be repeated")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--publish", metavar="URI", help="copy shards + manifest to a pyarrow filesystem URI (s3://, gs://, file://)")
    p.add_argument("--no-prefect", action="store_true", help="run the stages directly, without Prefect (the same driver)")
    _add_config(p)
    _add_runner(p)

    def run(args):
        cfg = _config(args)
        from pipeline.core.errors import ConfigError

        if not args.dump and not args.urls:
            raise ConfigError("give --dump FILE_OR_GLOB ... and/or --urls FILE_OR_GLOB ...")
        if args.no_prefect:
            from pipeline.build import expand_dumps, funnel_table, run_build
            from pipeline.sources.urllists import expand_url_lists

            if args.task_runner != "threads" or args.dask_address or args.workers:
                raise ConfigError("--task-runner, --dask-address and --workers need the Prefect flow; drop --no-prefect")
            print(funnel_table(run_build(expand_dumps(args.dump), args.out, cfg,
                                         url_lists=expand_url_lists(args.urls) if args.urls else [])))
            return
        _heartbeats()
        from flows.corpus import build_corpus, preflight, task_runner
        from flows.lifecycle import temporary_server

        preflight(args.dump, args.out, cfg, args.dask_address if args.task_runner == "dask" else None, url_lists=args.urls)
        runner = task_runner(args.task_runner, args.dask_address, args.workers)
        with temporary_server():  # without PREFECT_API_URL: one that dies with this process, SIGKILL included
            build_corpus.with_options(task_runner=runner)(args.dump, args.out, cfg.to_dict(), args.publish, urls=args.urls)

    p.set_defaults(func=run)


@register
def add_stages(sub):
    from pipeline.stages import describe

    p = sub.add_parser("stages", formatter_class=FORMATTER, help="list the stages of a build (the stage registry)",
                       description="The stages `webtext build` runs, in order, from pipeline/stages.py: what each "
                       "reads and writes under the build directory, what it counts, and how its work is split into "
                       "partitions (mapped as tasks on a Dask cluster).\n\n" + describe(),
                       )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.set_defaults(func=lambda args: print(describe()))


@register
def add_serve(sub):
    p = sub.add_parser(
        "serve", formatter_class=FORMATTER, help="serve the build (scheduled) and train (triggered) deployments",
        description="Serves two Prefect deployments from this process until stopped: build-corpus/webtext-build on a "
        "schedule (--cron or --interval), and train-model/webtext-train, triggered by the webtext.corpus.published event "
        "a build emits when it adds a shard version (whoever started the build: schedule, UI, CLI, API). The training "
        "run gets that build's directory and version, trains into BUILD_DIR/model/train-vNNNN, and a build that adds "
        "nothing triggers nothing. One run of each deployment at a time. Give --dump as glob patterns so each scheduled "
        "build sees the months added since. Needs a running Prefect server (PREFECT_API_URL), e.g. "
        "`prefect server start`, or Prefect Cloud. Ctrl-C / SIGTERM marks runs still going as cancelled.",
    )
    p.add_argument("--dump", action="extend", nargs="+", required=True, metavar="FILE_OR_GLOB",
                   help="dump files or glob patterns (quoted); may be repeated")
    p.add_argument("--out", required=True, metavar="DIR")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--cron", default="0 6 2 * *", help="build schedule (default: 06:00 UTC on the 2nd of each month)")
    when.add_argument("--interval", type=float, metavar="SECONDS", help="build every SECONDS instead of a cron schedule")
    when.add_argument("--no-schedule", action="store_true", help="serve the build deployment without a schedule")
    p.add_argument("--preset", default="tiny", help="model preset the triggered training uses")
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--publish", metavar="URI")
    p.add_argument("train_overrides", nargs="*", metavar="KEY=VALUE", help="training options, e.g. max_steps=1000")
    _add_config(p)

    def run(args):
        import os

        from pipeline.core.errors import ConfigError

        if not os.environ.get("PREFECT_API_URL"):
            # Measured: Prefect's temporary per-process server starts, but runs no
            # scheduled builds (no scheduler service), and nothing outside can reach it.
            raise ConfigError("webtext serve needs a Prefect server that outlives this process: run "
                              "`prefect server start --host 127.0.0.1` and `export PREFECT_API_URL=http://127.0.0.1:4200/api` "
                              "(or log in to Prefect Cloud), then serve again")
        if args.interval is not None and args.interval < 1:
            raise ConfigError("--interval must be at least 1 second")
        _heartbeats()
        from flows.serve import serve_deployments
        from model.train import load_train_config

        cfg = _config(args)
        # The same file's [train] section becomes the triggered runs' options (checked now, before serving).
        load_train_config(args.config, args.preset, args.train_overrides)
        if args.config:
            import tomllib

            section = tomllib.loads(Path(args.config).read_text()).get("train", {})
            args.train_overrides = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in section.items()] \
                + list(args.train_overrides)
        schedule = None if args.no_schedule else {"interval": args.interval} if args.interval else {"cron": args.cron}
        print("serving build-corpus/webtext-build" + (f" ({schedule})" if schedule else " (no schedule)")
              + " and train-model/webtext-train (on each new corpus version); Ctrl-C stops", flush=True)
        serve_deployments(args.dump, args.out, cfg.to_dict(), schedule,
                          {"preset": args.preset, "overrides": args.train_overrides, "val_fraction": args.val_fraction},
                          args.publish)

    p.set_defaults(func=run)


@register
def add_report(sub):
    p = sub.add_parser(
        "report", formatter_class=FORMATTER, help="how WebText-like a corpus is: domains, lengths, languages, drops",
        description="Describes the shard directory SHARDS: its top domains beside WebText's (OpenAI's domains.txt, "
        "given with --webtext-domains or [report] webtext_domains: share of documents in WebText's top-1000 domains, "
        "Spearman rank correlation, the most over- and under-represented domains), the document length distribution, "
        "languages, GPT-2 tokens per document (a sample) and the drop reasons of every version's funnel. Writes "
        "likeness.json, likeness.md and likeness.png to OUT (default: beside SHARDS). Each version's profile is "
        "computed once (SHARDS/profiles/), so a report after a monthly build reads only the new shards.",
    )
    p.add_argument("--shards", required=True, metavar="SHARDS")
    p.add_argument("--out", metavar="DIR")
    p.add_argument("--webtext-domains", metavar="FILE", help="OpenAI's domains.txt ('COUNT DOMAIN' per line)")
    p.add_argument("--config", metavar="TOML")

    def run(args):
        from pipeline.core.config import Config
        from pipeline.report.likeness import likeness_markdown, write_report

        cfg = Config.load(args.config).report
        shards = Path(args.shards)
        if not (shards / "manifest.json").is_file():
            raise SystemExit(f"{shards}: no manifest.json (not a shard directory written by `webtext shard`)")
        rep = write_report(shards, args.out or shards.parent, args.webtext_domains or cfg.webtext_domains, cfg.token_sample)
        print(likeness_markdown(rep))
        print(f"\nwritten: {Path(args.out or shards.parent) / 'likeness.{json,md,png}'}")

    p.set_defaults(func=run)


@register
def add_demo(sub):
    p = sub.add_parser(
        "demo", formatter_class=FORMATTER, help="the offline demo: build a corpus from a bundled sample and train on it",
        description="Generates two sample Reddit months (data/sample/RS_2017-0{7,8}.zst) and serves their small web on "
        "127.0.0.1, runs the build-corpus flow on month 1 and then on month 2 (incremental), then the train-model flow "
        "(tokenize, train the tiny GPT-2 for a couple of minutes on CPU, evaluate on the held-out split, sample). "
        "Needs no network.",
    )
    p.add_argument("--out", default="data/out/demo", metavar="DIR")
    p.add_argument("--steps", type=int, default=200, help="training steps of the tiny model")

    def run(args):
        from flows.lifecycle import temporary_server

        with temporary_server():  # without PREFECT_API_URL: one that dies with this process, SIGKILL included
            demo(args)

    def demo(args):
        import shutil

        from flows.corpus import build_corpus, funnel_markdown
        from flows.demo import DemoWeb, DemoWorld, demo_config
        from flows.train import train_model

        out = Path(args.out)
        if out.exists():
            shutil.rmtree(out)  # the demo starts clean every time
        world = DemoWorld()
        dumps = world.write_dumps(Path("data/sample"))
        with DemoWeb(world) as web:
            cfg = demo_config(world, web.address)
            results = []
            for i, d in enumerate(dumps):
                print(f"\n== build {i + 1}: {d.name} ==", file=sys.stderr)
                results.append(build_corpus([str(d)], str(out / "build"), cfg.to_dict()))
        for i, r in enumerate(results):
            print(f"\nbuild {i + 1} ({dumps[i].name}):\n" + funnel_markdown(r["stages"]))
        print("\n" + (out / "build" / "likeness.md").read_text().strip())
        r = train_model(str(out / "build"), str(out / "model"), "tiny",
                        [f"max_steps={args.steps}", "block_size=64", "batch_size=16", "eval_interval=50", "eval_iters=5",
                         f"warmup_steps={max(1, args.steps // 10)}"], val_fraction=0.1, prompt="The city council")
        h = r["eval"]["heldout"]
        print(f"\nheld-out: {h['documents']} documents, {h['tokens']:,} tokens, perplexity {h['ppl']:.2f}, "
              f"{h['bits_per_byte']:.3f} bits/byte (val loss {r['train']['val'][0][1]:.3f} -> {r['train']['val'][-1][1]:.3f})")
        print("sample:", r["eval"]["sample"])
        b = out / "build"
        print(f"\nshards:     {b / 'shards'} (data/*.parquet, README.md dataset card, manifest.json)\n"
              f"likeness:   {b / 'likeness.md'} and likeness.png\nWARCs:      {b / 'fetch' / 'warc'}\n"
              f"funnel:     {b / 'funnel.json'} and funnel.png\ncheckpoint: {Path(r['train_dir']) / 'ckpt.pt'}\n"
              f"loss plot:  {Path(r['train_dir']) / 'loss.png'}\neval:       {Path(r['train_dir']) / 'eval.json'}")

    p.set_defaults(func=run)
