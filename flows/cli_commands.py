"""Subcommands beyond `links`; each registers itself with flows.cli."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import FORMATTER, _add_config, _config, register
from pipeline.config import DedupConfig, FetchConfig, FilterConfig


# --- model: tokenize, generate, export-hf, import-hf, train-tokenizer --------------------


@register
def add_tokenize(sub):
    p = sub.add_parser(
        "tokenize", formatter_class=FORMATTER, help="documents (Parquet shards) -> token shards for training",
        description="Reads Parquet documents (id, text) from SHARDS (a shard directory with manifest.json, or any "
        "Parquet files), encodes them with GPT-2's byte-level BPE (or --tokenizer DIR) on all cores, and writes "
        "OUT/train.bin and OUT/val.bin (uint16 memmaps, <|endoftext|> between documents), OUT/val_docs.npy and "
        "OUT/manifest.json. The held-out split is chosen per document by a hash of its id.",
    )
    p.add_argument("--in", dest="src", required=True, metavar="SHARDS")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--tokenizer", default="gpt2", help="'gpt2' or a directory saved by `webtext train-tokenizer`")
    p.add_argument("--val-fraction", type=float, default=0.05, help="held-out share of documents (GPT-2 paper: 5%%; nanoGPT: 0.0005)")
    p.add_argument("--threads", type=int, default=None, help="encoding threads (default: all cores)")

    def run(args):
        from model.data import tokenize_shards
        from model.tokenizer import Tokenizer

        m = tokenize_shards(args.src, args.out, Tokenizer.load(args.tokenizer), args.val_fraction, args.threads)
        print(f"train: {m['train']['tokens']:,} tokens in {m['train']['documents']:,} documents; "
              f"val: {m['val']['tokens']:,} tokens in {m['val']['documents']:,} documents -> {args.out}")

    p.set_defaults(func=run)


@register
def add_train_tokenizer(sub):
    p = sub.add_parser(
        "train-tokenizer", formatter_class=FORMATTER, help="train a new byte-level BPE on Parquet documents",
        description="Trains a byte-level BPE with GPT-2's pre-tokenisation (Hugging Face tokenizers) on the text of "
        "Parquet documents and saves vocab.json + merges.txt in OUT, loadable by --tokenizer OUT and by "
        "transformers' GPT2TokenizerFast.",
    )
    p.add_argument("--in", dest="src", required=True, metavar="SHARDS")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--vocab-size", type=int, default=8192)

    def run(args):
        from model.data import iter_documents, parquet_files
        from model.tokenizer import train_bpe

        texts = (t for _, ts in iter_documents(parquet_files(args.src)) for t in ts if t)
        tok = train_bpe(texts, args.vocab_size, name=Path(args.out).name)
        tok.save(args.out)
        print(f"saved a {tok.n_vocab:,}-token BPE to {args.out} (sha256 {tok.sha256[:16]})")

    p.set_defaults(func=run)


@register
def add_generate(sub):
    p = sub.add_parser(
        "generate", formatter_class=FORMATTER, help="sample text from a checkpoint",
        description="Samples continuations of one or more prompts with temperature, top-k and top-p, using a KV cache; "
        "stops at <|endoftext|> or after --max-new-tokens.",
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="ckpt.pt or its directory")
    p.add_argument("--prompt", action="append", required=True, help="repeat for a batch of prompts")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    p.add_argument("--top-k", type=int, default=40, help="GPT-2 paper samples used top-k 40; 0 disables")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling, e.g. 0.9")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--num-samples", type=int, default=1, help="samples per prompt")
    p.add_argument("--device", default="cpu")

    def run(args):
        from model.checkpoint import load_model
        from model.generate import generate
        from model.tokenizer import Tokenizer

        model, ckpt = load_model(args.checkpoint, args.device)
        tok = Tokenizer.load(ckpt.get("tokenizer_path") or "gpt2")
        prompts = [tok.encode(p) or [tok.eot_id] for p in args.prompt for _ in range(args.num_samples)]
        outs = generate(model, prompts, args.max_new_tokens, args.temperature, args.top_k or None, args.top_p,
                        tok.eot_id, args.seed)
        for i, (p, o) in enumerate(zip(prompts, outs)):
            print(f"--- sample {i + 1}")
            print(tok.decode(p) + tok.decode(o))

    p.set_defaults(func=run)


@register
def add_export_hf(sub):
    p = sub.add_parser("export-hf", formatter_class=FORMATTER, help="write a checkpoint as a Hugging Face GPT-2 directory",
                       description="Writes config.json, model.safetensors and tokenizer files that "
                       "transformers' GPT2LMHeadModel / GPT2TokenizerFast.from_pretrained load.")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("out", metavar="OUTDIR")

    def run(args):
        from model.checkpoint import load_model
        from model.hf import export_hf
        from model.tokenizer import Tokenizer

        model, ckpt = load_model(args.checkpoint)
        export_hf(model, args.out, Tokenizer.load(ckpt.get("tokenizer_path") or "gpt2"))
        print(f"wrote {args.out}")

    p.set_defaults(func=run)


@register
def add_import_hf(sub):
    p = sub.add_parser("import-hf", formatter_class=FORMATTER, help="load GPT-2 weights from a Hugging Face directory",
                       description="Reads a GPT-2 directory (config.json + model.safetensors or pytorch_model.bin, e.g. "
                       "OpenAI's released models) and writes a webtext checkpoint.")
    p.add_argument("hf_dir", metavar="DIR")
    p.add_argument("--out", default=None, metavar="CKPT", help="default: DIR/ckpt.pt")

    def run(args):
        from model.checkpoint import save_checkpoint
        from model.hf import import_hf

        model = import_hf(args.hf_dir)
        out = save_checkpoint(args.out or Path(args.hf_dir) / "ckpt.pt", model, tokenizer_path=None, step=0)
        print(f"imported {model.num_params():,} parameters -> {out}")

    p.set_defaults(func=run)


# --- corpus stages: fetch, extract --------------------------------------------------------


def _links_rows(links_dir):
    from pipeline.links import iter_links

    return iter_links(links_dir, columns=("id", "url", "url_norm", "created_utc"))  # created_utc: for archived captures


@register
def add_fetch(sub):
    p = sub.add_parser(
        "fetch", formatter_class=FORMATTER, help="fetch the links' pages into WARC files (or replay WARCs)",
        description="Fetches every URL of the links directory LINKS (every merge run) that has no final outcome yet, politely "
        "(per-host limit and delay, a user agent naming the project, robots.txt) and safely (time-outs, size and "
        "redirect caps, no private addresses), writing raw responses to OUT/warc/*.warc.gz and one outcome per URL. "
        "Stopped and started again, it fetches only what is left. Transient failures (time-outs, connection and DNS "
        "errors, 429, 5xx) are fetched again by a later run after a back-off ([fetch] retry_after_s, doubling per "
        "attempt) up to [fetch] max_attempts attempts, then counted as given up. With --from-warc, pages come from existing WARC "
        "files (ours, Common Crawl's) instead of the network.",
    )
    p.add_argument("--links", required=True, metavar="DIR", help="a links directory (`webtext links --out`)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--from-warc", nargs="+", metavar="FILE", help="replay these WARC files instead of fetching")
    p.add_argument("--workers", type=int, help=f"threads (default {FetchConfig().workers})")
    p.add_argument("--no-robots", action="store_true", help="do not read robots.txt")
    p.add_argument("--allow-private", action="store_true", help="allow loopback/private targets (tests, local mirrors)")
    p.add_argument("--user-agent", help="default names the project")
    p.add_argument("--retry-failed", action="store_true",
                   help="fetch every URL whose last outcome was transient now, ignoring back-off and given-up status")
    p.add_argument("--source", choices=("live", "archive", "live-then-archive"),
                   help="where pages come from (default [fetch] source, 'live'); the archives are [[fetch.archive_cdx]] "
                        "(README, Archive fallback)")
    _add_config(p)

    def run(args):
        from pipeline.fetch import fetch_links, replay_links

        cfg = _config(args)
        fc = cfg.fetch
        if args.workers:
            fc.workers = args.workers
        if args.no_robots:
            fc.respect_robots = False
        if args.allow_private:
            fc.allow_private_addresses = True
        if args.user_agent:
            fc.user_agent = args.user_agent
        if args.source:
            fc.source = args.source
        fc.validate()
        rows = _links_rows(args.links)
        if args.from_warc:
            s = replay_links(rows, args.out, args.from_warc)
        else:
            s = fetch_links(rows, args.out, fc, retry_failed=args.retry_failed)
        s.print()

    p.set_defaults(func=run)


@register
def add_extract(sub):
    p = sub.add_parser(
        "extract", formatter_class=FORMATTER, help="extract main text from WARC responses into Parquet documents",
        description="Reads response records from WARC files (--warc, any producer) or the ok outcomes of a fetch "
        "directory (--fetch), extracts main text with trafilatura on all cores, joins Reddit metadata from --links, "
        "and writes OUT/part-*.parquet (id, url, text, title, scores, subreddits, reddit ids, fetch metadata) and "
        "OUT/summary.extract.json. Resumable: a restart skips pages already handled.",
    )
    p.add_argument("--warc", nargs="+", metavar="FILE")
    p.add_argument("--fetch", metavar="DIR", help="a fetch output directory: the ok pages of its outcome logs, each "
                   "log read from where the last run stopped (OUT/ledger/)")
    p.add_argument("--links", nargs="*", default=[], metavar="DIR",
                   help="links directories for Reddit metadata (with --fetch: only for outcome records of a fetch "
                   "older than the one that carries them)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--workers", type=int, help="processes (default: all cores)")
    _add_config(p)

    def run(args):
        from pipeline.extract import extract_documents, extract_fetched, load_reddit_meta, tasks_from_warcs

        cfg = _config(args)
        if args.workers:
            cfg.extract.workers = args.workers
        if bool(args.warc) == bool(args.fetch):
            from pipeline.config import ConfigError

            raise ConfigError("give either --warc FILE ... or --fetch DIR")
        if args.warc:
            missing = [w for w in args.warc if not Path(w).is_file()]
            if missing:
                raise FileNotFoundError(f"WARC file(s) not found: {', '.join(missing)}")
        if args.fetch:
            if not Path(args.fetch).is_dir():
                raise FileNotFoundError(f"fetch directory not found: {args.fetch}")
            # as the build does: each outcome log read from where the last run stopped
            extract_fetched(args.fetch, args.out, cfg.extract, args.links).print()
            return
        damaged: list[dict] = []
        # Read the WARC index first: a file that is not a WARC fails here, before anything is written.
        tasks = list(tasks_from_warcs(args.warc, damaged))
        s = extract_documents(tasks, args.out, cfg.extract, load_reddit_meta(args.links), damaged=damaged)
        s.print()

    p.set_defaults(func=run)


# --- corpus stages: filter, dedup, shard ---------------------------------------------------


@register
def add_filter(sub):
    p = sub.add_parser(
        "filter", formatter_class=FORMATTER, help="drop Wikipedia, short, non-English and junk documents",
        description="Reads Parquet documents from IN, fixes mojibake (ftfy), and drops with a named reason: Wikipedia "
        "(every language and mobile host, mirrors, copied-article markers), documents under 128 GPT-2 tokens, "
        "non-English (lingua), captcha/cookie/paywall/error pages. Writes kept documents to OUT (one file per input "
        "file), OUT/summary.filter.json, and with --write-dropped the dropped ones to OUT/dropped/ for audit.",
    )
    p.add_argument("--in", dest="src", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    fd = FilterConfig()
    p.add_argument("--min-length", type=int, help=f"minimum length (default {fd.min_length}, OpenWebText/Megatron)")
    p.add_argument("--length-unit", choices=["tokens", "words", "chars"], help=f"unit of --min-length (default {fd.length_unit})")
    p.add_argument("--languages", help=f"comma-separated ISO 639-1 codes to keep (default {','.join(fd.languages)})")
    p.add_argument("--write-dropped", action="store_true")
    _add_config(p)

    def run(args):
        from pipeline.filters import filter_documents

        fc = _config(args).filter
        if args.min_length is not None:
            fc.min_length = args.min_length
        if args.length_unit:
            fc.length_unit = args.length_unit
        if args.languages:
            fc.languages = tuple(x.strip() for x in args.languages.split(",") if x.strip())
        fc.validate()
        filter_documents(args.src, args.out, fc, args.write_dropped).print()

    p.set_defaults(func=run)


@register
def add_dedup(sub):
    DD = DedupConfig()
    p = sub.add_parser(
        "dedup", formatter_class=FORMATTER, help="near-duplicate removal with MinHash LSH",
        description=f"Reads Parquet documents with id and text (score optional) from IN, finds near-duplicates with "
        f"MinHash LSH ({DD.bands} bands x {DD.rows} rows over {DD.num_perm} permutations of word {DD.shingle_words}-grams, "
        f"candidates verified by estimated Jaccard >= {DD.jaccard_threshold} or containment >= {DD.containment_threshold}, "
        "chosen on the Reuters near-dup set), clusters them, keeps per cluster a document kept by an earlier run, else "
        f"(keep = {DD.keep!r}) the one first submitted to Reddit ('score': the highest score), then the higher score, the "
        "longest, the smallest id, and writes per run OUT/documents-NNNN.parquet, OUT/duplicates-NNNN.parquet (id, "
        "duplicate_of) and the summary. Only input parts no earlier run consumed are read. The index (memory-mapped "
        "Arrow segments, one per run, and a ledger of the parts consumed) persists in --state (default OUT/state), so "
        "the next run is checked against everything kept; --redis keeps the band buckets in a Redis server instead.",
    )
    p.add_argument("--in", dest="src", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--state", metavar="DIR", help="index directory (default OUT/state)")
    p.add_argument("--redis", metavar="URL", help="redis://HOST:PORT for datasketch's Redis storage")
    _add_config(p)

    def run(args):
        from pipeline.dedup import dedup_documents

        dc = _config(args).dedup
        if args.redis:
            dc.redis_url = args.redis
        dedup_documents(args.src, args.out, dc, args.state).print()

    p.set_defaults(func=run)


@register
def add_shard(sub):
    p = sub.add_parser(
        "shard", formatter_class=FORMATTER, help="write the final corpus as Parquet shards with a manifest",
        description="Reads the document parts of IN (the directory `webtext dedup` wrote, or any directory of Parquet "
        "documents) that no version of OUT consumed yet, streams them into zstd Parquet shards of at most ~256 MB under "
        "a new manifest version (OUT/manifest.json: file, rows, bytes, sha256 per shard; the parts each version "
        "consumed). ""Nothing new: nothing changes.",
    )
    p.add_argument("--in", dest="src", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    _add_config(p)

    def run(args):
        from pipeline.shards import shard_documents

        cfg = _config(args)
        src = Path(args.src)
        if not src.exists():
            raise FileNotFoundError(f"{args.src}: no such file or directory (give the directory `webtext dedup` wrote)")
        dedup_dir = src.is_dir() and any(src.glob("documents-*.parquet"))
        shard_documents(src, args.out, cfg.shards, {"config": cfg.to_dict()},
                        pattern="documents-*.parquet" if dedup_dir else "*.parquet").print()

    p.set_defaults(func=run)


# --- train, eval ------------------------------------------------------------------------


@register
def add_train(sub):
    p = sub.add_parser(
        "train", formatter_class=FORMATTER, help="train GPT-2 on token shards",
        description="Trains the GPT-2 of the model package on DATA (written by `webtext tokenize`): AdamW, warm-up + "
        "cosine, clipping, accumulation, bf16/fp16 on GPU, optional compile; DDP under torchrun. Writes OUT/ckpt.pt "
        "(atomically, every ckpt_interval steps and at the end), OUT/metrics.jsonl and OUT/loss.png. Options from a "
        "TOML file ([train] section) and KEY=VALUE overrides, e.g. max_steps=100 lr=3e-4.",
    )
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--preset", default="tiny", help="tiny, small, gpt2, gpt2-medium, gpt2-large, gpt2-xl")
    p.add_argument("--config", metavar="TOML")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="stop, with a checkpoint, after N steps of this call (train in parts: continue with --resume)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")

    def run(args):
        from model.train import load_train_config, train

        if args.stop_after is not None and args.stop_after < 1:
            raise SystemExit("--stop-after must be >= 1")
        cfg = load_train_config(args.config, args.preset, args.overrides + [f"data_dir={args.data}", f"out_dir={args.out}"])
        r = train(cfg, resume=args.resume, stop_after=args.stop_after)
        print(f"step {r['step']}: train loss {r['losses'][-1] if r['losses'] else float('nan'):.3f}"
              + (f", val loss {r['val'][-1][1]:.3f}" if r["val"] else "") + f"; checkpoint {r['checkpoint']}")

    p.set_defaults(func=run)


@register
def add_eval(sub):
    p = sub.add_parser(
        "eval", formatter_class=FORMATTER, help="held-out perplexity and zero-shot LAMBADA / WikiText-2 / PTB",
        description="Evaluates a checkpoint: held-out perplexity and bits per byte on DATA's val split (every "
        "document, sliding window), and the GPT-2 paper's zero-shot tasks from files you pass (LAMBADA jsonl, "
        "WikiText-2 tokens, PTB text; .xz accepted). Prints a table next to the paper's Table 3 and writes JSON.",
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT")
    p.add_argument("--data", metavar="DIR", help="token shards for the held-out split")
    p.add_argument("--lambada", metavar="FILE")
    p.add_argument("--wikitext2", metavar="FILE", help="WikiText-2 test (tokenized: wiki.test.tokens, or raw), "
                   "scored article by article")
    p.add_argument("--ptb", metavar="FILE")
    p.add_argument("--limit", type=int, default=None,
                   help="LAMBADA examples / held-out documents / WikiText-2 articles / PTB words to use")
    p.add_argument("--stride", type=int, default=None, metavar="N",
                   help="tokens a sliding window advances on long texts (default: half the context; the context "
                   "itself gives lm-evaluation-harness's disjoint windows)")
    p.add_argument("--out", metavar="JSON", help="default: beside the checkpoint, eval.json")
    p.add_argument("--device", default="cpu")

    def run(args):
        from model.checkpoint import load_model, resolve_checkpoint
        from model.evaluate import evaluate_all, format_table
        from model.tokenizer import Tokenizer
        from pipeline.summary import atomic_write_json

        from pipeline.config import ConfigError

        if not (args.data or args.lambada or args.wikitext2 or args.ptb):
            raise ConfigError("nothing to evaluate: give --data DIR (held-out split) and/or --lambada / --wikitext2 / "
                              "--ptb FILE (an existing eval.json is left as it is)")
        missing = [f for f in (args.data, args.lambada, args.wikitext2, args.ptb) if f and not Path(f).exists()]
        if missing:
            raise FileNotFoundError(f"evaluation input(s) not found: {', '.join(missing)}")
        model, ckpt = load_model(args.checkpoint, args.device)
        tok = Tokenizer.load(ckpt.get("tokenizer_path") or "gpt2")
        res = evaluate_all(model, tok, args.data, args.lambada, args.wikitext2, args.ptb, args.device, args.limit,
                           args.stride)
        out = Path(args.out) if args.out else resolve_checkpoint(args.checkpoint).with_name("eval.json")
        atomic_write_json(out, res)
        print(format_table(res, model, args.limit))
        print(f"wrote {out}")

    p.set_defaults(func=run)


@register
def add_decontaminate(sub):
    p = sub.add_parser(
        "decontaminate", formatter_class=FORMATTER, help="report (and optionally remove) documents overlapping eval sets",
        description="Compares word n-grams (13 by default, as Megatron's OpenWebText tools; the GPT-2 paper used 8) of "
        "every shard document with the evaluation sets given, writes OUT/contamination.json and prints per set how "
        "many examples overlap the corpus. With --remove, writes OUT/shards without the documents holding at least "
        "--min-matches evaluation n-grams.",
    )
    p.add_argument("--shards", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--lambada", metavar="FILE")
    p.add_argument("--wikitext2", metavar="FILE")
    p.add_argument("--ptb", metavar="FILE")
    p.add_argument("--eval", action="append", default=[], metavar="NAME=FILE", help="any other text/jsonl set")
    p.add_argument("--n", type=int, default=13)
    p.add_argument("--min-matches", type=int, default=1)
    p.add_argument("--remove", action="store_true")

    def run(args):
        from pipeline.config import ConfigError
        from pipeline.decontaminate import decontaminate, format_report

        sets = {k: v for k, v in (("lambada", args.lambada), ("wikitext2", args.wikitext2), ("ptb", args.ptb)) if v}
        for e in args.eval:
            if "=" not in e:
                raise ConfigError(f"--eval expects NAME=FILE, got {e!r}")
            k, v = e.split("=", 1)
            sets[k] = v
        if not sets:
            raise ConfigError("give at least one evaluation set (--lambada, --wikitext2, --ptb, --eval NAME=FILE)")
        s = decontaminate(args.shards, sets, args.out, n=args.n, remove=args.remove, min_matches=args.min_matches)
        s.print()
        print(format_report(s))

    p.set_defaults(func=run)


# --- whole builds and the demo ------------------------------------------------------------


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
        from pipeline.config import ConfigError

        if not args.dump and not args.urls:
            raise ConfigError("give --dump FILE_OR_GLOB ... and/or --urls FILE_OR_GLOB ...")
        if args.no_prefect:
            from pipeline.build import expand_dumps, funnel_table, run_build
            from pipeline.urllists import expand_url_lists

            if args.task_runner != "threads" or args.dask_address or args.workers:
                raise ConfigError("--task-runner, --dask-address and --workers need the Prefect flow; drop --no-prefect")
            print(funnel_table(run_build(expand_dumps(args.dump), args.out, cfg,
                                         url_lists=expand_url_lists(args.urls) if args.urls else [])))
            return
        from flows.corpus import build_corpus, preflight, task_runner

        preflight(args.dump, args.out, cfg, args.dask_address if args.task_runner == "dask" else None, url_lists=args.urls)
        runner = task_runner(args.task_runner, args.dask_address, args.workers)
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

        from pipeline.config import ConfigError

        if not os.environ.get("PREFECT_API_URL"):
            # Measured: Prefect's temporary per-process server starts, but runs no
            # scheduled builds (no scheduler service), and nothing outside can reach it.
            raise ConfigError("webtext serve needs a Prefect server that outlives this process: run "
                              "`prefect server start --host 127.0.0.1` and `export PREFECT_API_URL=http://127.0.0.1:4200/api` "
                              "(or log in to Prefect Cloud), then serve again")
        if args.interval is not None and args.interval < 1:
            raise ConfigError("--interval must be at least 1 second")
        from flows.corpus import serve_deployments
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
        from pipeline.config import Config
        from pipeline.report import likeness_markdown, write_report

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
        import shutil

        from flows.corpus import build_corpus, funnel_markdown, train_model
        from pipeline.demo import DemoWeb, DemoWorld, demo_config

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

