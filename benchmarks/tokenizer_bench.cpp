// Tokenizer throughput: tandem's SentencePiece and byte-level BPE encoders
// against naive reference implementations written here, on the same ~1 MB of
// text in the same run.
//
// Corpus: the repository's own text (models/stories260K.greedy.txt lines and
// the llama.cpp test inputs in models/vocab/*.inp, which carry Cyrillic, CJK,
// Khmer, emoji and odd whitespace), drawn in a fixed pseudo-random order until
// the corpus holds --mb megabytes. Each draw is one "document", tokenized by one
// encode call, as prompts are.
//
// Baselines (the textbook algorithms):
//   SPM: split into characters; after every merge rescan all adjacent pairs,
//        building each concatenation as a std::string and looking it up in an
//        unordered_map, and merge the best-scoring one.
//   BPE: per pre-tokenized word (tandem's GPT-2 pre-tokenizer, shared by both
//        sides), symbols as strings; after every merge rescan all pairs in a
//        std::map of (left, right) -> rank and merge the lowest-ranked one.
// Both baselines must produce exactly tandem's ids; the program checks that.
//
//   bench-tokenizer-bench [--mb 1.0] [--runs 5] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <tandem/gguf/reader.hpp>
#include <tandem/tokenizer/tokenizer.hpp>

using namespace tandem;
using Ids = std::vector<std::int32_t>;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw IoError("cannot open " + path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

std::vector<std::string> split(const std::string& s, const std::string& sep) {
    std::vector<std::string> out;
    for (std::size_t pos = 0; pos < s.size();) {
        const auto next = s.find(sep, pos);
        if (next == std::string::npos) {
            out.push_back(s.substr(pos));
            break;
        }
        out.push_back(s.substr(pos, next - pos));
        pos = next + sep.size();
    }
    return out;
}

// Documents drawn half from the story lines, half from the test inputs.
std::vector<std::string> build_corpus(const std::string& models, std::size_t target_bytes) {
    const auto story = split(read_file(models + "/stories260K.greedy.txt"), "\n");
    const auto inputs = split(read_file(models + "/vocab/ggml-vocab-llama-spm.gguf.inp"), "\n__ggml_vocab_test__\n");
    std::vector<std::string> lines, mixed;
    for (const auto& l : story)
        if (!l.empty()) lines.push_back(l);
    for (const auto& in : inputs)
        if (!in.empty()) mixed.push_back(in);
    std::mt19937 rng(2024);
    std::vector<std::string> docs;
    std::size_t total = 0;
    while (total < target_bytes) {
        const auto& pool = (rng() & 1) ? lines : mixed;
        docs.push_back(pool[rng() % pool.size()]);
        total += docs.back().size();
    }
    return docs;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Encodes every document with `encode`, `runs` times; returns the median seconds
// and the ids of the last run.
double time_runs(const std::vector<std::string>& docs, int runs, const std::function<void(const std::string&, Ids&)>& encode,
                 std::vector<Ids>& ids) {
    std::vector<double> t;
    for (int r = 0; r < runs; ++r) {
        ids.assign(docs.size(), {});
        const auto t0 = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < docs.size(); ++i) encode(docs[i], ids[i]);
        t.push_back(seconds_since(t0));
    }
    return median(t);
}

// ---- naive SentencePiece ---------------------------------------------------------

struct NaiveSpm {
    std::unordered_map<std::string, std::int32_t> ids;
    std::vector<float> scores;

    explicit NaiveSpm(const Vocab& v) {
        for (std::int32_t i = 0; i < v.n_tokens(); ++i) {
            ids.emplace(v.text(i), i);
            scores.push_back(v.score(i));
        }
    }

    void encode(const std::string& text, Ids& out) const {
        std::string escaped = "\xE2\x96\x81";
        for (char c : text) escaped += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
        std::vector<std::string> sym;
        for (std::size_t i = 0; i < escaped.size();) {
            const auto len = std::min(utf8_lead_length(static_cast<unsigned char>(escaped[i])), escaped.size() - i);
            sym.push_back(escaped.substr(i, len));
            i += len;
        }
        for (;;) {
            std::ptrdiff_t best = -1;
            float best_score = 0;
            for (std::size_t k = 0; k + 1 < sym.size(); ++k) {
                const auto it = ids.find(sym[k] + sym[k + 1]);
                if (it == ids.end()) continue;
                const float s = scores[static_cast<std::size_t>(it->second)];
                if (best < 0 || s > best_score) best = static_cast<std::ptrdiff_t>(k), best_score = s;
            }
            if (best < 0) break;
            sym[static_cast<std::size_t>(best)] += sym[static_cast<std::size_t>(best) + 1];
            sym.erase(sym.begin() + best + 1);
        }
        for (const auto& t : sym) {
            if (const auto it = ids.find(t); it != ids.end()) {
                out.push_back(it->second);
                continue;
            }
            for (unsigned char b : t) {
                char name[8];
                std::snprintf(name, sizeof name, "<0x%02X>", b);
                out.push_back(ids.at(name));
            }
        }
    }
};

// ---- naive byte-level BPE --------------------------------------------------------

struct NaiveBpe {
    std::unordered_map<std::string, std::int32_t> ids;
    std::map<std::pair<std::string, std::string>, std::size_t> ranks;

    explicit NaiveBpe(const Vocab& v) {
        for (std::int32_t i = 0; i < v.n_tokens(); ++i) ids.emplace(v.text(i), i);
        for (std::size_t r = 0; r < v.merges().size(); ++r) ranks.emplace(v.merges()[r], r);
    }

    void encode(const std::string& text, Ids& out) const {
        std::vector<std::string_view> words;
        Gpt2PreTokenizer{}.split(text, words);
        for (auto w : words) {
            std::vector<std::string> sym;
            for (char b : w) sym.push_back(gpt2_bytes_to_text(std::string_view(&b, 1)));
            for (;;) {
                std::size_t best = SIZE_MAX, best_rank = SIZE_MAX;
                for (std::size_t k = 0; k + 1 < sym.size(); ++k) {
                    const auto it = ranks.find({sym[k], sym[k + 1]});
                    if (it != ranks.end() && it->second < best_rank) best = k, best_rank = it->second;
                }
                if (best == SIZE_MAX) break;
                sym[best] += sym[best + 1];
                sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best) + 1);
            }
            for (const auto& s : sym) out.push_back(ids.at(s));
        }
    }
};

struct Row {
    std::string tokenizer, impl, note;
    double mb_per_s = 0;
    double ratio = 0;  // vs the baseline of the same tokenizer; 0 for the baseline itself
    std::size_t tokens = 0;
};

std::size_t count_tokens(const std::vector<Ids>& ids) {
    std::size_t n = 0;
    for (const auto& v : ids) n += v.size();
    return n;
}

}  // namespace

int main(int argc, char** argv) {
    double mb = 1.0;
    int runs = 5;
    std::string json;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--mb" && i + 1 < argc) mb = std::atof(argv[++i]);
        else if (a == "--runs" && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
        else if (a == "--json" && i + 1 < argc) json = argv[++i];
        else {
            std::fprintf(stderr, "usage: %s [--mb 1.0] [--runs 5] [--json FILE]\n", argv[0]);
            return 2;
        }
    }
    const std::string models = TANDEM_MODELS_DIR;
    const auto docs = build_corpus(models, static_cast<std::size_t>(mb * 1024 * 1024));
    std::size_t bytes = 0, non_ascii = 0;
    std::string whole;
    for (const auto& d : docs) {
        bytes += d.size();
        for (unsigned char c : d) non_ascii += c >= 0x80;
        whole += d;
        whole += '\n';
    }
    const double mbytes = static_cast<double>(bytes) / (1024.0 * 1024.0);
    const int naive_runs = std::max(1, std::min(runs, 3));
    std::printf("tokenizer benchmark: %.2f MB in %zu documents (%.1f%% non-ASCII bytes); median of %d runs (%d for naive)\n",
                mbytes, docs.size(), 100.0 * static_cast<double>(non_ascii) / static_cast<double>(bytes), runs,
                naive_runs);

    std::vector<Row> rows;
    bool all_equal = true;
    auto bench = [&](const char* name, const std::string& path, auto naive_encode_factory) {
        const auto tok = Tokenizer::from_gguf(GgufFile::open(path));
        std::vector<Ids> ours_ids, naive_ids;
        const double t_ours = time_runs(docs, runs, [&](const std::string& d, Ids& out) { out = tok.encode(d, false); },
                                        ours_ids);
        const auto naive = naive_encode_factory(tok.vocab());
        const double t_naive = time_runs(docs, naive_runs, [&](const std::string& d, Ids& out) { naive.encode(d, out); },
                                         naive_ids);
        const bool equal = ours_ids == naive_ids;
        all_equal = all_equal && equal;
        // The whole corpus as one string in one call (no baseline: the naive
        // rescan is quadratic in the length of one sequence).
        std::vector<double> t_whole;
        std::size_t whole_tokens = 0;
        for (int r = 0; r < runs; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            whole_tokens = tok.encode(whole, false).size();
            t_whole.push_back(seconds_since(t0));
        }
        const double whole_mb = static_cast<double>(whole.size()) / (1024.0 * 1024.0);
        rows.push_back({name, "naive rescan", "baseline", mbytes / t_naive, 0, count_tokens(naive_ids)});
        rows.push_back({name, "tandem", equal ? "ids identical to baseline" : "IDS DIFFER FROM BASELINE",
                        mbytes / t_ours, t_naive / t_ours, count_tokens(ours_ids)});
        rows.push_back({name, "tandem, one string", "whole corpus in one encode call", whole_mb / median(t_whole), 0,
                        whole_tokens});
    };
    bench("spm (llama-spm 32000)", models + "/vocab/ggml-vocab-llama-spm.gguf",
          [](const Vocab& v) { return NaiveSpm(v); });
    bench("bpe (gpt-2 50257)", models + "/vocab/ggml-vocab-gpt-2.gguf", [](const Vocab& v) { return NaiveBpe(v); });

    std::printf("\n%-22s %-20s %10s %9s %9s  %s\n", "tokenizer", "implementation", "MB/s", "speedup", "tokens", "note");
    for (const auto& r : rows) {
        char ratio[32] = "";
        if (r.ratio > 0) std::snprintf(ratio, sizeof ratio, "%.1fx", r.ratio);
        std::printf("%-22s %-20s %10.2f %9s %9zu  %s\n", r.tokenizer.c_str(), r.impl.c_str(), r.mb_per_s, ratio,
                    r.tokens, r.note.c_str());
    }

    if (!json.empty()) {
        std::ofstream f(json);
        f << "{\n  \"benchmark\": \"tokenizer\",\n  \"corpus_bytes\": " << bytes << ",\n  \"documents\": " << docs.size()
          << ",\n  \"runs\": " << runs << ",\n  \"naive_runs\": " << naive_runs << ",\n  \"ids_identical\": "
          << (all_equal ? "true" : "false") << ",\n  \"results\": [\n";
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const auto& r = rows[i];
            f << "    {\"tokenizer\": \"" << r.tokenizer << "\", \"implementation\": \"" << r.impl
              << "\", \"mb_per_s\": " << r.mb_per_s << ", \"speedup_vs_naive\": " << r.ratio
              << ", \"tokens\": " << r.tokens << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
        }
        f << "  ]\n}\n";
        if (!f) {
            std::fprintf(stderr, "cannot write %s\n", json.c_str());
            return 1;
        }
    }
    if (!all_equal) {
        std::fprintf(stderr, "error: tandem's ids differ from the naive baseline's\n");
        return 1;
    }
    return 0;
}
