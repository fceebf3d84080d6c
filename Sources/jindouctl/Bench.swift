import ArgumentParser
import Foundation
import JindouBenchmarks
import JindouWire
import Logging

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run benchmarks and write their results (docs/benchmarks.md and JSON).",
        subcommands: [ClusterBench.self, KernelBench.self, DecodeBench.self]
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
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "jindou.bench")
        logger.logLevel = .notice
        let jindoud = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("jindoud").path
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
    @Option(help: "Formats, comma-separated: bf16, f16, q8_0, q4_k.")
    var formats: String = "bf16,f16,q8_0,q4_k"
    @Option(help: "Timed passes per measurement (the best is kept).")
    var repetitions: Int = 5
    @Option(help: "Markdown file to update.")
    var out: String = "docs/benchmarks.md"
    @Option(help: "JSON results file.")
    var json: String = "docs/benchmarks/kernels.json"

    var threadCounts: [Int] { threads.split(separator: ",").compactMap { Int($0) } }

    func validate() throws {
        guard !threadCounts.isEmpty, threadCounts.allSatisfy({ $0 >= 1 && $0 <= 256 }) else { throw ValidationError("--threads: e.g. 1,2") }
        guard hidden % 256 == 0, intermediate % 256 == 0 else { throw ValidationError("--hidden and --intermediate must be multiples of 256 (Q4_K blocks)") }
        guard experts >= 1, repetitions >= 1 else { throw ValidationError("--experts and --repetitions must be ≥ 1") }
    }

    func run() throws {
        let benchmark = KernelBenchmark(options: .init(
            hidden: hidden, intermediate: intermediate, experts: experts, threads: threadCounts,
            formats: formats.split(separator: ",").map(String.init), repetitions: repetitions))
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
        abstract: "Single-process decode tokens/s of Jindou and llama.cpp's llama-bench on the same model, per thread count.",
        discussion: """
            Example (docs/benchmarks.md has the whole recipe, including building llama-bench):
              jindouctl synth --like qwen3-30b-a3b --layers 8 --vocab-size 32768 --out /tmp/q30b-8l
              jindouctl quantize --to q8_0 --model /tmp/q30b-8l --out /tmp/q30b-8l-q8_0.gguf
              jindouctl bench decode --model /tmp/q30b-8l --gguf /tmp/q30b-8l-q8_0.gguf --llama-bench /path/to/llama-bench
            """
    )

    @Option(help: "Checkpoint directory.") var model: String
    @Option(help: "The same model as GGUF (jindouctl quantize).") var gguf: String
    @Option(name: .customLong("llama-bench"), help: "llama.cpp's llama-bench binary (omit to measure Jindou only).") var llamaBench: String?
    @Option(name: .customLong("expert-format"), help: "q8_0 or q4_k: the experts' format in the GGUF.") var expertFormat: String = "q8_0"
    @Option(help: "Thread counts, comma-separated.") var threads: String = "1,2"
    @Option(help: "Tokens to decode.") var tokens: Int = 32
    @Option(help: "Markdown file to update.") var out: String = "docs/benchmarks.md"
    @Option(help: "JSON results file.") var json: String = "docs/benchmarks/decode.json"

    var threadCounts: [Int] { threads.split(separator: ",").compactMap { Int($0) } }

    func validate() throws {
        guard !threadCounts.isEmpty, threadCounts.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--threads: e.g. 1,2") }
        guard ["q8_0", "q4_k"].contains(expertFormat) else { throw ValidationError("--expert-format must be q8_0 or q4_k") }
        guard tokens >= 2 else { throw ValidationError("--tokens must be ≥ 2") }
    }

    func run() throws {
        let jindouctl = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let benchmark = DecodeBenchmark(options: .init(model: model, gguf: gguf, llamaBench: llamaBench, expertFormat: expertFormat,
                                                       threads: threadCounts, tokens: tokens, jindouctl: jindouctl))
        do {
            let report = try benchmark.run { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            try BenchmarkReport.writeJSON(report, to: json)
            try BenchmarkReport.replaceSection(named: "decode", in: out, with: report.markdown)
            print(report.markdown)
        } catch {
            throw CLIError(error)
        }
    }
}
