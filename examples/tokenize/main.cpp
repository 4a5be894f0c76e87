// tokenize: CLIP BPE from the command line.
//
//   tokenize --vocab PATH [--context 77] TEXT...     one JSON line per text:
//                                                      {"input_ids": [...], "attention_mask": [...]}
//   tokenize --train CORPUS --vocab-size N --out DIR  trains a vocabulary on CORPUS (one
//                                                      text per line), writes DIR/vocab.json
//                                                      + DIR/merges.txt (HF format)
//
// PATH is OpenAI's bpe_simple_vocab_16e6.txt.gz, a directory with vocab.json +
// merges.txt, or a vocab.json. With no TEXT arguments, texts are read from stdin, one
// per line; an error names the line ("stdin line 3: text: invalid UTF-8 at byte 4").
#include <CLI/CLI.hpp>
#include <iostream>

#include "data/bpe_trainer.h"
#include "data/tokenizer.h"
#include "encode_lines.h"
#include "tensor/error.h"

int main(int argc, char** argv) {
  CLI::App app{"CLIP byte-level BPE: encode texts, or train a vocabulary"};
  std::string vocab_path, corpus, out_dir;
  int64_t context = 77;
  mms::data::BpeTrainOptions train;
  std::vector<std::string> texts;
  auto* vocab_opt = app.add_option("--vocab", vocab_path, "vocabulary: .gz, vocab.json, or a directory");
  app.add_option("--context", context, "context length (truncate keeping EOS, pad with EOS)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  auto* train_opt = app.add_option("--train", corpus, "train on this corpus (one text per line)");
  app.add_option("--vocab-size", train.vocab_size, "trained vocabulary size (>= 514)");
  app.add_option("--min-frequency", train.min_frequency, "merge only pairs seen at least this often");
  app.add_option("--out", out_dir, "output directory for --train");
  app.add_option("texts", texts, "texts to encode (stdin lines when none)");
  train_opt->excludes(vocab_opt);
  CLI11_PARSE(app, argc, argv);

  try {
    if (!corpus.empty()) {
      if (out_dir.empty()) throw mms::Error("tokenize: --train needs --out DIR");
      std::vector<std::string> lines = mms::data::read_corpus_lines(corpus);
      mms::data::BpeVocab vocab = mms::data::train_bpe(lines, train);
      mms::data::save_hf_bpe(vocab, out_dir);
      std::cerr << "tokenize: trained " << vocab.merges.size() << " merges (" << vocab.size()
                << " tokens) on " << lines.size() << " lines; wrote " << out_dir << "/vocab.json and merges.txt\n";
      return 0;
    }
    if (vocab_path.empty()) throw mms::Error("tokenize: give --vocab PATH to encode, or --train CORPUS --out DIR");
    mms::data::ClipTokenizer tokenizer = mms::data::ClipTokenizer::load(vocab_path);
    if (texts.empty()) {
      mmtokenize::encode_lines(tokenizer, context, std::cin, "stdin", std::cout);
    } else {
      for (size_t i = 0; i < texts.size(); ++i)
        mmtokenize::encode_text(tokenizer, context, texts[i], mms::concat("text argument ", i + 1), std::cout);
    }
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
