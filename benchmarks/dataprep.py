"""What a run spends on its data before the first update, with the notebook's own code. Prints one table.

    python benchmarks/dataprep.py                                  # made-up stories, budget_100's numbers
    python benchmarks/dataprep.py --data .data --threads 1 2      # the cased text gpu_prepare.sh copies there

Before training, the notebook trains its tokenizer on `n_tokenizer_stories` stories, then tokenises every training
story once into the token cache. Both run in the Rust `tokenizers` library, on as many threads as it is given
(RAYON_NUM_THREADS; each thread count is measured in a process of its own, since the library sets up its threads
once). Where the data hold fewer stories than asked, they are repeated: a repeated word costs the tokenizer what a new
one does, except that its BPE cache hits more often and its trainer merges fewer distinct words, so these figures are
on the fast side. The last column projects the mode's own numbers of stories linearly from the measured rates (by
default the tokenizer is trained on as many stories as the mode's, so only the tokenising is projected).
Downloading the stories from the Hugging Face Hub, which depends on the network, is not measured.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from common import load_definitions, make_stories, print_row, print_table


def stories_to_measure(nb, data, n):
    """n training stories from the local files in `data` (or made up), repeated where there are fewer; and how many
    of them are distinct."""
    stories = nb.load_local_stories(data, 10**9, 1)[0] if data else make_stories(20_000)
    return (stories * (n // len(stories) + 1))[:n], min(n, len(stories))


def measure(nb, cfg, stories, distinct):
    """Seconds to train the tokenizer and to tokenise the stories, as the notebook's cells do."""
    trained_on = stories[: cfg.n_tokenizer_stories]
    began = time.perf_counter()
    tokenizer = nb.train_tokenizer(trained_on, cfg.model.vocab_size)
    tokenizer_seconds = time.perf_counter() - began
    began = time.perf_counter()
    nb.fingerprint(tokenizer.backend_tokenizer.to_str(), nb.CHAT_PREFIX, *stories)  # the token cache's key
    tokens = nb.tokenize_stories(tokenizer, stories)
    return {"trained_on": len(trained_on), "tokenizer_s": tokenizer_seconds, "stories": len(stories),
            "distinct": distinct, "tokens": len(tokens), "tokenize_s": time.perf_counter() - began}


def measure_in_process(args, threads):
    """measure() in a fresh process whose tokenizer runs on `threads` threads."""
    command = [sys.executable, __file__, "--mode", args.mode, "--stories", str(args.stories), "--child"]
    command += ["--data", args.data] if args.data else []
    result = subprocess.run(command, env={**os.environ, "RAYON_NUM_THREADS": str(threads)}, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="budget_100", help="whose vocabulary size and numbers of stories")
    parser.add_argument("--data", help="local story files or folders, as the notebook's DATA_PATH takes them")
    parser.add_argument("--stories", type=int, help="training stories to tokenise (default: as many as the "
                        "mode trains its tokenizer on, so that only the tokenising is projected)")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count()}))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    nb = load_definitions()
    cfg = nb.get_config(args.mode)
    args.stories = args.stories or cfg.n_tokenizer_stories
    if args.child:
        print(json.dumps(measure(nb, cfg, *stories_to_measure(nb, args.data, args.stories))))
        return
    print(f"{os.cpu_count()} CPU cores; mode {args.mode}: vocabulary {cfg.model.vocab_size:,}, tokenizer trained on "
          f"{cfg.n_tokenizer_stories:,} stories, {cfg.n_train_stories:,} training stories; "
          f"{'local' if args.data else 'made-up'} stories")
    header = ("threads", "tokenizer training (stories, s)", "tokenising (stories (distinct), tokens, s)", "tokens/s",
              f"projected for {args.mode}")
    rows = []
    for threads in args.threads:
        m = measure_in_process(args, threads)
        projected = (m["tokenizer_s"] * cfg.n_tokenizer_stories / m["trained_on"]
                     + m["tokenize_s"] * cfg.n_train_stories / m["stories"])
        rows.append((str(threads), f"{m['trained_on']:,}, {m['tokenizer_s']:.1f}",
                     f"{m['stories']:,} ({m['distinct']:,}), {m['tokens']:,}, {m['tokenize_s']:.1f}",
                     f"{m['tokens'] / m['tokenize_s']:,.0f}", f"{projected / 60:.1f} min"))
        print_row(rows[-1])  # each row as it comes
    print_table(header, rows)


if __name__ == "__main__":
    main()
