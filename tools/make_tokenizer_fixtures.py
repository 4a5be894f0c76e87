#!/usr/bin/env python3
"""Writes tests/fixtures/data/tokenizer_cases.json: reference CLIP token ids from the
HF tokenizer (transformers' CLIPTokenizer, backed by `tokenizers`), so the C++ tests
compare against the real implementation without needing Python.

The vocabulary is OpenAI's bpe_simple_vocab_16e6.txt.gz (never copied into the repo);
it is converted in memory to the vocab/merges that HF's CLIP checkpoints ship, the way
OpenAI's SimpleTokenizer builds them.

    pip install transformers tokenizers
    python3 tools/make_tokenizer_fixtures.py [--vocab ../shared/clip/bpe_simple_vocab_16e6.txt.gz]
"""
import argparse
import gzip
import json
import os

from transformers import CLIPTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def openai_vocab(path):
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {v: i for i, v in enumerate(vocab)}, merges


CASES = [
    "a photo of a cat",
    "You should've done this",
    "",
    "   ",
    "Hello, World!",
    "HELLO world",
    "café naïve résumé",
    "Cafe\u0301 (decomposed e + combining acute)",
    "Ångström Œuvre ß straße",
    "İstanbul ΣΊΣΥΦΟΣ",
    "I ❤️ pizza 🍕🍕 and 👩‍👩‍👧 families",
    "😀",
    "日本語のテキスト 中文 한국어",
    "東京タワーは333メートル",
    "12345 and 3.14159 and 1,000,000",
    "room 101, year 2024",
    "I'm, you're, he's, we'll, they'd, can't, won't, ain't",
    "DON'T SHOUT, IT'S RUDE",
    "rock 'n' roll ''quoted'' 'single'",
    "Tom &amp; Jerry &lt;3 &quot;quoted&quot; &#39;x&#39;",
    "tab\tseparated\nnew line\r\nwindows  double  space",
    "\n\n leading and trailing whitespace \t ",
    "non\u00a0breaking\u2003em space\u3000ideographic",
    "punctuation!!! ??? ... --- ___ *** ### @@@ $$$ %%%",
    "e-mail: someone@example.com, url https://example.org/path?q=1&x=2",
    "a <|endoftext|> in the middle",
    "<|startoftext|>already marked<|endoftext|>",
    "snake_case camelCase kebab-case",
    "Ünïcödé àccènts ëvêrywhère",
    "ﬁ ligature and ① circled and ½ fraction",
    "Arabic مرحبا Hebrew שלום Hindi नमस्ते Thai สวัสดี",
    "Zero\u200bwidth\u200djoiner",
    "a man helps an elderly woman cross the street",
    "someone is stealing a wallet from a sleeping passenger",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    " ".join(["the quick brown fox jumps over the lazy dog"] * 12),
    "x" * 300,
    "word " * 80,
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", default=os.path.join(REPO, "..", "shared", "clip", "bpe_simple_vocab_16e6.txt.gz"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "data", "tokenizer_cases.json"))
    args = ap.parse_args()

    vocab, merges = openai_vocab(args.vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=merges)
    assert tok.bos_token_id == 49406 and tok.eos_token_id == 49407 and tok.pad_token_id == 49407

    cases = []
    for text in CASES:
        full = tok(text)["input_ids"]
        padded = tok(text, max_length=77, truncation=True, padding="max_length")
        cases.append({"text": text, "ids": full,
                      "ids_77": padded["input_ids"], "mask_77": padded["attention_mask"]})
    assert cases[0]["ids"] == [49406, 320, 1125, 539, 320, 2368, 49407], cases[0]["ids"]
    assert cases[1]["ids"] == [49406, 592, 1535, 1200, 1700, 589, 49407], cases[1]["ids"]
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/make_tokenizer_fixtures.py",
                   "reference": "transformers.CLIPTokenizer (tokenizers backend)",
                   "context_length": 77, "cases": cases}, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
