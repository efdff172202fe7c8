"""Generate ``example_repo/models/textgen/tokenizer.json``: the text model's own tokenizer.

A word-level tokenizer (the ``tokenizers`` library's ``WordLevel`` model after a whitespace
split) over the fixed vocabulary :data:`VOCABULARY`. The ``textgen`` model reads the same file
and streams words of this vocabulary, so the number of tokens in its output is known by
construction: one token per word. Any other whitespace-separated word (a synthetic prompt's
random letters) counts as one ``[UNK]`` token. The JSON is written with sorted keys and a
fixed layout, so the output is byte-for-byte reproducible: ``--check`` verifies the committed
file.

    python example_repo/scripts/make_tokenizer.py            # (re)write the tokenizer
    python example_repo/scripts/make_tokenizer.py --check    # exit 1 if the file differs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "models" / "textgen" / "tokenizer.json"
UNKNOWN = "[UNK]"
#: The words the model streams, in the order it cycles through them.
VOCABULARY = tuple(
    " ".join(
        (
            "the of and to in is that it was for on are as with his they at be this from have or",
            "by one had not but what all were when we there can an your which their said if do",
            "will each about how up out them then she many some so these would other into has",
            "more her two like him see time could no make than first been its who now people my",
            "made over did down only way find use may water long little very after words called",
            "just where most know get through back much before go good new write our used me man",
            "too any day same right look think also around another came come work three word must",
            "because does part even place well such here take why things help put years different",
            "away again off went old number great tell men say small every found still between",
            "name should home big give air line set own under read last never us left end along",
            "while might next sound below saw something thought both few those always looked show",
            "large often together asked house world going want school important until form food",
            "keep children feet land side without boy once animals life enough took sometimes",
            "four head above kind began almost live page got earth need far hand high year mother",
            "light parts country father let night following picture being study second eyes soon",
            "times story boys since white days ever paper hard near sentence better best across",
            "during today",
        )
    ).split()
)


def build_tokenizer() -> Tokenizer:
    """A ``WordLevel`` tokenizer: ``[UNK]`` is id 0, the vocabulary's words 1..N in order."""
    if len(set(VOCABULARY)) != len(VOCABULARY):
        raise SystemExit("VOCABULARY holds a word twice")
    vocab = {UNKNOWN: 0, **{word: i + 1 for i, word in enumerate(VOCABULARY)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNKNOWN))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


def render(tokenizer: Tokenizer) -> bytes:
    """The tokenizer as a file: its JSON, re-serialised with a fixed layout."""
    return (json.dumps(json.loads(tokenizer.to_str()), indent=1) + "\n").encode()


def main(argv: list[str] | None = None) -> int:
    """Write the tokenizer, or with ``--check`` compare it with the file on disk."""
    parser = argparse.ArgumentParser(description="Generate (or --check) the textgen tokenizer.")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="PATH",
        help=f"where to write the tokenizer (default: {DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if PATH differs from a fresh build",
    )
    args = parser.parse_args(argv)

    data = render(build_tokenizer())
    if args.check:
        current = args.output.read_bytes() if args.output.exists() else b""
        if current != data:
            print(f"{args.output} differs from a fresh build: rerun {sys.argv[0]}", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date ({len(data)} bytes)")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
