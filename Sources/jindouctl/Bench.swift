import ArgumentParser
import Foundation
import JindouBenchmarks
import JindouWire
import Logging

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run benchmarks and write their results (docs/benchmarks.md and JSON).",
        subcommands: [ClusterBench.self, KernelBench.self, DecodeBench.self, ScalingBench.self]
    )
}

struct ClusterBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Dispatch/combine vs raw round trip, and decode tokens/s for 1…N local workers.",
        discussion: """
            Example (a Qwen3-30B-A3B-shaped model with 8 layers):
              jindouctl synth --like qwen3-30b-a3b --layers 8 --vocab-size 32768 --out /tmp/q30b-8l
              jindouctl bench cluster --model /tmp/q30b-8l --workers 1,2,3
            """
    )

    @Option(help: "Checkpoint directory (e.g. from jindouctl synth).")
    var model: String

    @Option(help: "Worker counts to run, comma-separated.")
    var workers: String = "1,2,3"

    @Option(name: .customLong("decode-tokens"), help: "Tokens to decode per measurement.")
    var decodeTokens: Int = 32

    @Option(help: "Repetitions of each per-layer measurement.")
    var repetitions: Int = 50

    @Option(name: .customLong("wire-dtype"), help: "f32 or bf16.")
    var wireDType: String = "f32"

    @Option(help: "Markdown file to update.")
    var out: String = "docs/benchmarks.md"

    @Option(help: "JSON results file.")
    var json: String = "docs/benchmarks/cluster.json"

    var counts: [Int] { workers.split(separator: ",").compactMap { Int($0) } }

    func validate() throws {
        guard !counts.isEmpty, counts.allSatisfy({ $0 >= 1 && $0 <= 16 }) else { throw ValidationError("--workers: e.g. 1,2,3") }
        guard WireDType(rawValue: wireDType) != nil else { throw ValidationError("--wire-dtype must be f32 or bf16") }
    }

    func run() async throws {
        let (logger, jindoud) = benchmarkEnvironment()
        do {
            let report = try await ClusterBenchmark(options: .init(
                modelDirectory: model, workerCounts: counts, decodeTokens: decodeTokens, repetitions: repetitions,
                jindoud: jindoud, wireDType: WireDType(rawValue: wireDType)!), logger: logger).run()
            try BenchmarkReport.writeJSON(report, to: json)
            try BenchmarkReport.replaceSection(named: "cluster", in: out, with: report.markdown)
            print(report.markdown)
        } catch {
            throw CLIError(error)
        }
    }
}

struct ScalingBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "Decode tokens/s with 1, 2, 3… workers, each in its own network namespace and pinned to one core, as a ratio to one worker.",
        discussion: """
            Needs root and iproute2 (it creates namespaces jdscale-h0… with cluster/netns/cluster.sh and removes them).
            Example:
              jindouctl bench scaling --model /tmp/q30b-8l-q8_0.gguf --workers 1,2,3
            """
    )

    @Option(help: "Checkpoint directory or GGUF file (coordinator and workers load the same model).") var model: String
    @Option(help: "Worker counts to run, comma-separated.") var workers: String = "1,2,3"
    @Option(name: .customLong("decode-tokens"), help: "Tokens to decode per measurement.") var decodeTokens: Int = 32
    @Option(help: "The netns harness script.") var harness: String = "cluster/netns/cluster.sh"
    @Option(help: "Link delay per direction (tc netem, e.g. 1ms), where the kernel has netem.") var delay: String?
    @Option(help: "Markdown file to update.") var out: String = "docs/benchmarks.md"
    @Option(help: "JSON results file.") var json: String = "docs/benchmarks/scaling.json"

    var counts: [Int] { workers.split(separator: ",").compactMap { Int($0) } }

    func validate() throws {
        guard !counts.isEmpty, counts.allSatisfy({ $0 >= 1 && $0 <= 16 }) else { throw ValidationError("--workers: e.g. 1,2,3") }
        guard FileManager.default.fileExists(atPath: harness) else { throw ValidationError("--harness: no file at \(harness)") }
    }

    func run() async throws {
        let (logger, jindoud) = benchmarkEnvironment()
        do {
            let report = try await ScalingBenchmark(options: .init(
                model: model, workerCounts: counts, decodeTokens: decodeTokens, jindoud: jindoud, harness: harness, delay: delay),
                logger: logger).run()
            try BenchmarkReport.writeJSON(report, to: json)
            try BenchmarkReport.replaceSection(named: "scaling", in: out, with: report.markdown)
            print(report.markdown)
        } catch {
            throw CLIError(error)
        }
    }
}

struct KernelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Expert GEMV speed per weight format and thread count, against the read bandwidth measured in the same run.",
        discussion: """
            Example (Qwen3-30B-A3B expert shapes, 48 experts ≈ 450 MB of bf16 weights):
              jindouctl bench kernels --threads 1,2
            Writes the 'kernels' section of --out and the JSON results. Build with -c release.
            """
    )

    @Option(help: "Hidden size (expert input and output width).")
    var hidden: Int = 2048
    @Option(help: "Expert intermediate size.")
    var intermediate: Int = 768
    @Option(help: "Experts (gate, up, down each) in the working set; make it larger than the caches.")
    var experts: Int = 48
    @Option(help: "Thread counts, comma-separated.")
    var threads: String = "1,2"
    @Option(help: "Formats, comma-separated: bf16, f16, or any block format (q4_0, q4_1, q5_0, q5_1, q8_0, q2_k … q6_k, iq4_nl, iq4_xs, iq2_xxs …, tq1_0, tq2_0, mxfp4).")
    var formats: String = "bf16,f16,q8_0,q4_k"
    @Option(help: "Timed passes per measurement (the best is kept).")
    var repetitions: Int = 5
    @Option(help: "Token counts per product, comma-separated (1: decode; more: prefill tiles).")
    var tokens: String = "1,4"
    @Option(help: "Markdown file to update.")
    var out: String = "docs/benchmarks.md"
    @Option(help: "JSON results file.")
    var json: String = "docs/benchmarks/kernels.json"

    var threadCounts: [Int] { threads.split(separator: ",").compactMap { Int($0) } }
    var tokenCounts: [Int] { tokens.split(separator: ",").compactMap { Int($0) } }

    func validate() throws {
        guard !tokenCounts.isEmpty, tokenCounts.allSatisfy({ $0 >= 1 && $0 <= 4096 }) else { throw ValidationError("--tokens: e.g. 1,4,16") }
        guard !threadCounts.isEmpty, threadCounts.allSatisfy({ $0 >= 1 && $0 <= 256 }) else { throw ValidationError("--threads: e.g. 1,2") }
        guard hidden % 256 == 0, intermediate % 256 == 0 else { throw ValidationError("--hidden and --intermediate must be multiples of 256 (Q4_K blocks)") }
        guard experts >= 1, repetitions >= 1 else { throw ValidationError("--experts and --repetitions must be ≥ 1") }
    }

    func run() throws {
        let benchmark = KernelBenchmark(options: .init(
            hidden: hidden, intermediate: intermediate, experts: experts, threads: threadCounts,
            formats: formats.split(separator: ",").map(String.init), repetitions: repetitions, tokens: tokenCounts))
        do {
            let report = try benchmark.run { line in
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
            try BenchmarkReport.writeJSON(report, to: json)
            try BenchmarkReport.replaceSection(named: "kernels", in: out, with: report.markdown)
            print(report.markdown)
        } catch {
            throw CLIError(error)
        }
    }
}

struct DecodeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode and prefill tokens/s of Jindou and llama.cpp's llama-bench on the same files, per format and thread count, against the bandwidth roofline.",
        discussion: """
            --model FORMAT=PATH, once per format: a checkpoint directory or a GGUF file. llama-bench runs on
            every .gguf model. tools/benchmarks.sh runs the whole recipe (docs/benchmarks.md):
              jindouctl synth --like qwen3-30b-a3b --layers 8 --vocab-size 32768 --out /tmp/q30b-8l
              jindouctl quantize --to q8_0 --model /tmp/q30b-8l --out /tmp/q30b-8l-q8_0.gguf
              jindouctl bench decode --model bf16=/tmp/q30b-8l --model q8_0=/tmp/q30b-8l-q8_0.gguf \\
                  --llama-bench /path/to/llama-bench --plot docs/benchmarks/decode.png
            """
    )

    @Option(help: "FORMAT=PATH (repeatable): a label and a checkpoint directory or .gguf file.") var model: [String]
    @Option(name: .customLong("llama-bench"), help: "llama.cpp's llama-bench binary (omit to measure Jindou only).") var llamaBench: String?
    @Option(help: "Thread counts, comma-separated.") var threads: String = "1,2"
    @Option(help: "Tokens to decode.") var tokens: Int = 32
    @Option(name: .customLong("prompt-tokens"), help: "Prompt length for the prefill measurement.") var promptTokens: Int = 64
    @Option(help: "Markdown file to update.") var out: String = "docs/benchmarks.md"
    @Option(help: "JSON results file.") var json: String = "docs/benchmarks/decode.json"
    @Option(help: "PNG chart of decode tokens/s (omit for none).") var plot: String?

    var threadCounts: [Int] { threads.split(separator: ",").compactMap { Int($0) } }

    var models: [DecodeBenchmark.Model] {
        model.compactMap { spec in
            guard let equals = spec.firstIndex(of: "="), equals != spec.startIndex else { return nil }
            return DecodeBenchmark.Model(format: String(spec[..<equals]), path: String(spec[spec.index(after: equals)...]))
        }
    }

    func validate() throws {
        guard !threadCounts.isEmpty, threadCounts.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--threads: e.g. 1,2") }
        guard !model.isEmpty, models.count == model.count else { throw ValidationError("--model FORMAT=PATH, e.g. q8_0=/tmp/m.gguf") }
        guard tokens >= 2 else { throw ValidationError("--tokens must be ≥ 2") }
        guard promptTokens >= 1 else { throw ValidationError("--prompt-tokens must be ≥ 1") }
    }

    func run() throws {
        let jindouctl = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let benchmark = DecodeBenchmark(options: .init(models: models, llamaBench: llamaBench, threads: threadCounts, tokens: tokens,
                                                       promptTokens: promptTokens, jindouctl: jindouctl))
        do {
            let report = try benchmark.run { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            try BenchmarkReport.writeJSON(report, to: json)
            var markdown = report.markdown
            if let plot {
                try Data(DecodePlot.render(report).pngData()).write(to: URL(fileURLWithPath: plot))
                markdown += "\n\n![decode tokens/s](\(Self.relative(plot, to: out)))"
            }
            try BenchmarkReport.replaceSection(named: "decode", in: out, with: markdown)
            print(markdown)
        } catch {
            throw CLIError(error)
        }
    }

    /// `path` relative to the directory of the markdown file, for the image link.
    static func relative(_ path: String, to markdown: String) -> String {
        let base = URL(fileURLWithPath: markdown).deletingLastPathComponent().standardizedFileURL.path + "/"
        let full = URL(fileURLWithPath: path).standardizedFileURL.path
        return full.hasPrefix(base) ? String(full.dropFirst(base.count)) : full
    }
}

/// The cluster benchmarks' logger (notice level, stderr) and the `jindoud` next to this binary.
private func benchmarkEnvironment() -> (Logger, String) {
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    var logger = Logger(label: "jindou.bench")
    logger.logLevel = .notice
    let jindoud = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("jindoud").path
    return (logger, jindoud)
}
