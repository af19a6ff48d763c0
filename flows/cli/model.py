"""The model's subcommands: tokenize, train-tokenizer, generate, export-hf, import-hf, train, eval, decontaminate."""

from __future__ import annotations

from pathlib import Path

from flows.cli.options import FORMATTER, register

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
        from model.checkpoint import load_model, resolve_checkpoint
        from model.errors import ConfigError as ModelConfigError
        from model.errors import InputError as ModelInputError
        from model.generate import check_options, generate
        from model.limits import check_fits, sampling_bytes
        from model.tokenizer import checkpoint_tokenizer

        if args.num_samples < 1:
            raise ModelConfigError(f"--num-samples must be >= 1, not {args.num_samples}")
        check_options(args.max_new_tokens, args.temperature, args.top_k or None, args.top_p)  # before any loading
        model, ckpt = load_model(args.checkpoint, args.device)
        tok = checkpoint_tokenizer(ckpt, resolve_checkpoint(args.checkpoint))
        if tok.n_vocab != model.config.vocab_size:
            raise ModelInputError(f"{resolve_checkpoint(args.checkpoint)}: the model has a vocabulary of "
                                  f"{model.config.vocab_size:,} tokens, its tokenizer {tok.name!r} {tok.n_vocab:,}: "
                                  "the checkpoint does not name the tokenizer it was trained with")
        encoded = [tok.encode(p) or [tok.eot_id] for p in args.prompt]
        check_fits(sampling_bytes(model.config, len(encoded) * args.num_samples, max(map(len, encoded)),
                                  args.max_new_tokens), args.device,
                   f"sampling {len(encoded) * args.num_samples:,} sequence(s)", "give fewer prompts or --num-samples")
        prompts = [e for e in encoded for _ in range(args.num_samples)]
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
        from model.checkpoint import load_model, resolve_checkpoint
        from model.hf import export_hf
        from model.tokenizer import checkpoint_tokenizer

        model, ckpt = load_model(args.checkpoint)
        export_hf(model, args.out, checkpoint_tokenizer(ckpt, resolve_checkpoint(args.checkpoint)))
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
        from model.tokenizer import checkpoint_tokenizer
        from pipeline.core.errors import ConfigError
        from pipeline.core.io import atomic_write_json

        if not (args.data or args.lambada or args.wikitext2 or args.ptb):
            raise ConfigError("nothing to evaluate: give --data DIR (held-out split) and/or --lambada / --wikitext2 / "
                              "--ptb FILE (an existing eval.json is left as it is)")
        missing = [f for f in (args.data, args.lambada, args.wikitext2, args.ptb) if f and not Path(f).exists()]
        if missing:
            raise FileNotFoundError(f"evaluation input(s) not found: {', '.join(missing)}")
        model, ckpt = load_model(args.checkpoint, args.device)
        tok = checkpoint_tokenizer(ckpt, resolve_checkpoint(args.checkpoint))
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
        from pipeline.core.errors import ConfigError
        from pipeline.report.decontaminate import decontaminate, format_report

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
