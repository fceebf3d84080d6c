import ArgumentParser
import Foundation
import JindouBenchmarks
import JindouModel
import JindouTransport
import JindouWire
import Logging

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run benchmarks and write their results (docs/benchmarks.md and JSON).",
        subcommands: [ClusterBench.self, KernelBench.self, DecodeBench.self, ScalingBench.self, QualityBench.self, NetworkBench.self, ProjectBench.self, SparseAttentionBench.self, LinearAttentionBench.self, PrefixCacheBench.self, StructuredOutputBench.self, FuzzBench.self]
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

    @Option(name: .customLong("wire-dtype"), help: "f32, bf16 or fp8.")
    var wireDType: String = "f32"

    @Option(help: "Transports to compare, comma-separated: tcp, shm (each worker count runs once per transport).")
    var transports: String = "tcp,shm"

    @Option(help: "Markdown file to update.")
    var out: String = "docs/benchmarks.md"

    @Option(help: "JSON results file.")
    var json: String = "docs/benchmarks/cluster.json"

    var transportList: [TransportChoice] { transports.split(separator: ",").compactMap { TransportChoice(rawValue: String($0)) } }

    var counts: [Int] { workers.split(separator: ",").compactMap { Int($0) } }

    func validate() throws {
        guard !counts.isEmpty, counts.allSatisfy({ $0 >= 1 && $0 <= 16 }) else { throw ValidationError("--workers: e.g. 1,2,3") }
        guard WireDType(rawValue: wireDType) != nil else { throw ValidationError("--wire-dtype must be f32, bf16 or fp8") }
        let list = transports.split(separator: ",")
        guard !list.isEmpty, list.allSatisfy({ $0 == "tcp" || $0 == "shm" }) else { throw ValidationError("--transports: tcp, shm or tcp,shm") }
    }

    func run() async throws {
        let (logger, jindoud) = benchmarkEnvironment()
        do {
            let report = try await ClusterBenchmark(options: .init(
                modelDirectory: model, workerCounts: counts, decodeTokens: decodeTokens, repetitions: repetitions,
                jindoud: jindoud, wireDType: WireDType(rawValue: wireDType)!, transports: transportList), logger: logger).run()
            try BenchmarkReport.writeJSON(report, to: json)
            try BenchmarkReport.replaceSection(named: "cluster", in: out, with: report.markdown)
            print(report.markdown)
        } catch {
            throw CLIError(error)
        }
    }
}

struct NetworkBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "network",
        abstract: "Jindou vs llama.cpp RPC on the same GGUF files over emulated links (namespaces, tbf rate, relay delay).",
        discussion: """
            Needs root and iproute2 (namespaces jdnet-h0… via cluster/netns/cluster.sh, removed afterwards), and for
            llama.cpp a GGML_RPC build: `tools/llama_cpp.sh --rpc` (its build-rpc/bin is --llama-bin). Example:
              jindouctl bench network --model q4_k=/tmp/q30b-8l-q4_k.gguf --model q8_0=/tmp/q30b-8l-q8_0.gguf \\
                --workers 2 --rtt 0,200us,1ms --rate 1gbit,10gbit --streams 8,32 --llama-bin $llama/build-rpc/bin
            Writes the 'network' section of --out, the JSON results and, with --plot, a PNG.
            """
    )

    @Option(name: .customLong("model"), help: "LABEL=PATH of a GGUF file or checkpoint (repeatable).") var models: [String] = []
    @Option(help: "Worker host counts, comma-separated.") var workers: String = "2"
    @Option(help: "Added round-trip times, comma-separated (0, 50us, 200us, 1ms).") var rtt: String = "0,200us,1ms"
    @Option(help: "Link rates, comma-separated (tc spelling), or 'none'.") var rate: String = "1gbit,10gbit"
    @Option(help: "Concurrent stream counts, comma-separated.") var streams: String = "8,32"
    @Option(name: .customLong("decode-tokens"), help: "Tokens generated per stream and measurement.") var decodeTokens: Int = 33
    @Option(name: .customLong("prompt-tokens"), help: "Prompt length of the prefill measurement.") var promptTokens: Int = 64
    @Option(name: .customLong("wire-dtype"), help: "f32, bf16 or fp8.") var wireDType: String = "f32"
    @Option(name: .customLong("llama-bin"), help: "Directory with ggml-rpc-server, llama-bench, llama-batched-bench (omit: Jindou only).")
    var llamaBin: String?
    @Option(help: "The netns harness script.") var harness: String = "cluster/netns/cluster.sh"
    @Option(help: "Markdown file to update.") var out: String = "docs/benchmarks.md"
    @Option(help: "JSON results file.") var json: String = "docs/benchmarks/network.json"
    @Option(help: "PNG chart to write (throughput at each RTT, Jindou vs llama.cpp).") var plot: String?
    @Option(name: .customLong("model-plot"), help: "PNG chart of measured against predicted rates (the latency model).") var modelPlot: String?

    func list(_ text: String) -> [String] { text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    var parsedModels: [(String, String)] {
        models.map { spec in
            let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
            return parts.count == 2 ? (parts[0], parts[1]) : (URL(fileURLWithPath: spec).lastPathComponent, spec)
        }
    }

    func validate() throws {
        guard !models.isEmpty else { throw ValidationError("give at least one --model LABEL=PATH") }
        for (_, path) in parsedModels where !FileManager.default.fileExists(atPath: path) { throw ValidationError("--model: no file at \(path)") }
        guard list(workers).allSatisfy({ (Int($0) ?? 0) >= 1 && Int($0)! <= 8 }) else { throw ValidationError("--workers: e.g. 2,3") }
        for value in list(rtt) { do { _ = try LinkUnits.seconds(value) } catch { throw ValidationError("--rtt: \(error)") } }
        for value in list(rate) where value != "none" { do { _ = try LinkUnits.bitsPerSecond(value) } catch { throw ValidationError("--rate: \(error)") } }
        guard list(streams).allSatisfy({ (Int($0) ?? 0) >= 1 }) else { throw ValidationError("--streams: e.g. 8,32") }
        guard WireDType(rawValue: wireDType) != nil else { throw ValidationError("--wire-dtype must be f32, bf16 or fp8") }
        guard decodeTokens >= 2, promptTokens >= 1 else { throw ValidationError("--decode-tokens ≥ 2, --prompt-tokens ≥ 1") }
        if let llamaBin {
            for tool in ["ggml-rpc-server", "llama-bench", "llama-batched-bench"] where !FileManager.default.isExecutableFile(atPath: "\(llamaBin)/\(tool)") {
                throw ValidationError("--llama-bin: no \(tool) in \(llamaBin) (build it with tools/llama_cpp.sh --rpc)")
            }
        }
        guard FileManager.default.fileExists(atPath: harness) else { throw ValidationError("--harness: no file at \(harness)") }
    }

    func run() async throws {
        let (logger, jindoud) = benchmarkEnvironment()
        let jindouctl = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        do {
            let report = try await NetworkBenchmark(options: .init(
                models: parsedModels, workerCounts: list(workers).map { Int($0)! }, rtts: list(rtt),
                rates: list(rate).map { $0 == "none" ? nil : $0 }, streams: list(streams).map { Int($0)! }, decodeTokens: decodeTokens,
                promptTokens: promptTokens, wireDType: WireDType(rawValue: wireDType)!, llamaBin: llamaBin, jindoud: jindoud,
                jindouctl: jindouctl, harness: harness), logger: logger).run()
            try BenchmarkReport.writeJSON(report, to: json)
            var markdown = report.markdown
            if let plot {
                try Data(NetworkPlot.render(report).pngData()).write(to: URL(fileURLWithPath: plot))
                markdown += "\n\n![throughput over emulated links](\(DecodeBench.relative(plot, to: out)))"
            }
            if let modelPlot {
                try Data(NetworkPlot.renderModel(report).pngData()).write(to: URL(fileURLWithPath: modelPlot))
                markdown += "\n\n![measured against predicted](\(DecodeBench.relative(modelPlot, to: out)))"
            }
            try BenchmarkReport.replaceSection(named: "network", in: out, with: markdown)
            print(markdown)
        } catch {
            throw CLIError(error)
        }
    }
}

struct ProjectBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "project",
        abstract: "Project decode tokens/s of real models on real clusters with the latency model (Jindou and llama.cpp RPC).",
        discussion: """
            No cluster is run: parameter counts come from the models' config.json (synth presets), bits per weight
            from --gguf (a file of the mix, e.g. a synthetic model quantised with --to Q4_K_M), the rest from the
            options. Writes the 'projection' section of --out. Example:
              jindouctl bench project --gguf /tmp/q30b-8l-q4_k_m.gguf --rpc-round-trips 3
            """
    )

    @Option(help: "A GGUF file whose expert and non-expert bits per weight to use.") var gguf: String?
    @Option(name: .customLong("expert-bits"), help: "Bits per routed-expert weight (without --gguf).") var expertBits: Double = 4.5
    @Option(name: .customLong("other-bits"), help: "Bits per other weight (without --gguf).") var otherBits: Double = 4.5
    @Option(name: .customLong("rpc-round-trips"), help: "llama.cpp RPC round trips per host and decode step (bench network measures it).")
    var rpcRoundTrips: Double = 3
    @Option(name: .customLong("memory-bandwidth"), help: "Memory bandwidth per host, GB/s.") var memoryBandwidth: Double = 50
    @Option(help: "Effective FLOP rate per host, TFLOP/s.") var tflops: Double = 1
    @Option(help: "Round trip of a 10 GbE link, µs.") var rtt10: Double = 50
    @Option(help: "Round trip of a 25 GbE link, µs.") var rtt25: Double = 30
    @Option(help: "Markdown file to update.") var out: String = "docs/performance.md"
    @Option(help: "JSON results file.") var json: String = "docs/benchmarks/projection.json"

    func run() throws {
        do {
            var bits = (experts: expertBits, other: otherBits)
            var source = "--expert-bits \(expertBits) / --other-bits \(otherBits)"
            if let gguf {
                bits = try ClusterProjection.measuredBits(gguf: gguf)
                source = String(format: "%@ (experts %.2f, other %.2f bits per weight)", URL(fileURLWithPath: gguf).lastPathComponent,
                                bits.experts, bits.other)
            }
            var projections: [ClusterProjection.Projection] = []
            for (preset, hosts, memory) in [("qwen3-235b-a22b", 4, 64e9), ("deepseek-v3", 8, 128e9)] {
                let weights = try ClusterProjection.Weights(preset: SyntheticModelShape.presets[preset]!, expertBitsPerWeight: bits.experts,
                                                            otherBitsPerWeight: bits.other)
                for (gigabits, rtt) in [(10.0, rtt10), (25.0, rtt25)] {
                    let machine = ClusterProjection.Machine(hosts: hosts, memoryBytesPerHost: memory, memoryBytesPerSecond: memoryBandwidth * 1e9,
                                                            flopsPerSecond: tflops * 1e12, linkBitsPerSecond: gigabits * 1e9,
                                                            roundTripSeconds: rtt * 1e-6)
                    projections.append(ClusterProjection.project(weights, on: machine, sequences: [1, 32], rpcRoundTripsPerHost: rpcRoundTrips))
                }
            }
            try BenchmarkReport.writeJSON(projections, to: json)
            let markdown = ClusterProjection.Projection.markdown(projections, rpcRoundTripsPerHost: rpcRoundTrips, source: source)
                + String(format: "\n\nAssumed per host: %.0f GB/s memory bandwidth, %.1f TFLOP/s; 10 GbE RTT %.0f µs, 25 GbE %.0f µs; bf16 wire.",
                         memoryBandwidth, tflops, rtt10, rtt25)
            try BenchmarkReport.replaceSection(named: "projection", in: out, with: markdown)
            print(markdown)
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
    @Option(name: .customLong("rtt"), help: "Added round-trip time per worker link (a userspace relay), e.g. 200us.") var delay: String?
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

struct PrefixCacheBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prefix-cache",
        abstract: "Time to first token of a chat's second turn with and without the prefix cache.",
        discussion: """
            Turn 1 is a long prompt and its answer; turn 2 sends both again plus a question. Measured on one
            engine with two schedulers (prefix cache on and off), rounds interleaved; turn 2's greedy tokens
            must equal the engine's. Example (release build):
              jindouctl synth --like qwen3-30b-a3b --layers 2 --vocab-size 32768 --out /tmp/q30b-2l
              jindouctl bench prefix-cache --model /tmp/q30b-2l --prompt-tokens 512,2048
            Writes the 'prefix-cache' section of --out and the JSON results.
            """
    )

    @Option(help: "Checkpoint directory (or GGUF file).") var model: String
    @Option(name: .customLong("prompt-tokens"), help: "Turn-1 prompt lengths, comma-separated.") var promptTokens: String = "512,2048"
    @Option(help: "Rounds per measurement (the fastest is kept).") var rounds: Int = 3
    @Option(help: "Markdown file to update.") var out: String = "docs/benchmarks.md"
    @Option(help: "JSON results file.") var json: String = "docs/benchmarks/prefix-cache.json"

    var lengths: [Int] { promptTokens.split(separator: ",").compactMap { Int($0) } }

    func validate() throws {
        guard !lengths.isEmpty, lengths.allSatisfy({ $0 >= 32 }) else { throw ValidationError("--prompt-tokens: e.g. 512,2048 (each ≥ 32)") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be ≥ 1") }
    }

    func run() async throws {
        let benchmark = PrefixCacheBenchmark(options: .init(model: model, promptTokens: lengths, rounds: rounds))
        do {
            let report = try await benchmark.run { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            try BenchmarkReport.writeJSON(report, to: json)
            try BenchmarkReport.replaceSection(named: "prefix-cache", in: out, with: report.markdown)
            print(report.markdown)
        } catch {
            throw CLIError(error)
        }
    }
}

struct StructuredOutputBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "structured-output",
        abstract: "Milliseconds per generated token to compute a constrained sequence's token mask, by vocabulary size.",
        discussion: """
            Synthetic byte-level vocabularies of the given sizes, a tool-call schema, one thread:
              jindouctl bench structured-output --vocabularies 32768,151936
            Writes the 'structured-output' section of --out and the JSON results. Build with -c release.
            """
    )

    @Option(help: "Vocabulary sizes, comma-separated.") var vocabularies: String = "32768,151936"
    @Option(help: "Constrained steps per vocabulary.") var steps: Int = 60
    @Option(help: "Markdown file to update.") var out: String = "docs/benchmarks.md"
    @Option(help: "JSON results file.") var json: String = "docs/benchmarks/structured-output.json"

    var sizes: [Int] { vocabularies.split(separator: ",").compactMap { Int($0) } }

    func validate() throws {
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 256 }) else { throw ValidationError("--vocabularies: e.g. 32768,151936 (each ≥ 256)") }
        guard steps >= 1 else { throw ValidationError("--steps must be ≥ 1") }
    }

    func run() throws {
        let benchmark = StructuredOutputBenchmark(options: .init(vocabularySizes: sizes, steps: steps))
        do {
            let report = try benchmark.run { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            try BenchmarkReport.writeJSON(report, to: json)
            try BenchmarkReport.replaceSection(named: "structured-output", in: out, with: report.markdown)
            print(report.markdown)
        } catch {
            throw CLIError(error)
        }
    }
}

struct SparseAttentionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sparse-attention",
        abstract: "DeepSeek Sparse Attention against dense MLA per decode token at long contexts: bytes, multiply-adds and time.",
        discussion: """
            One decode token's attention of one DeepSeek-V3.2-shaped layer (the weights random, bf16; the
            cache filled with random rows), with the indexer and as dense MLA on the same cache:
              jindouctl bench sparse-attention --contexts 4096,16384,65536
            Writes the 'sparse-attention' section of --out and the JSON results. Build with -c release;
            JINDOU_THREADS sets the kernel threads.
            """
    )

    @Option(help: "Context lengths (cached positions), comma-separated.")
    var contexts: String = "4096,16384,65536"
    @Option(help: "Timed steps per measurement (the fastest is kept).")
    var repetitions: Int = 3
    @Option(help: "Where the one-layer synthetic checkpoint is written (reused when present).")
    var checkpoint: String = NSTemporaryDirectory() + "jindou-bench-dsa"
    @Option(help: "Markdown file to update.")
    var out: String = "docs/benchmarks.md"
    @Option(help: "JSON results file.")
    var json: String = "docs/benchmarks/sparse-attention.json"

    var contextLengths: [Int] { contexts.split(separator: ",").compactMap { Int($0) } }

    func validate() throws {
        guard !contextLengths.isEmpty, contextLengths.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 }) else {
            throw ValidationError("--contexts: e.g. 4096,16384,65536 (each 1…1048576)")
        }
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be ≥ 1") }
    }

    func run() throws {
        let benchmark = SparseAttentionBenchmark(options: .init(contexts: contextLengths, repetitions: repetitions, directory: checkpoint))
        do {
            let report = try benchmark.run { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }
            try BenchmarkReport.writeJSON(report, to: json)
            try BenchmarkReport.replaceSection(named: "sparse-attention", in: out, with: report.markdown)
            print(report.markdown)
        } catch {
            throw CLIError(error)
        }
    }
}

struct LinearAttentionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "linear-attention",
        abstract: "Qwen3-Next's token mixers against Qwen3-30B-A3B's per decode token by context, and memory per sequence.",
        discussion: """
            One decode token through one Gated DeltaNet layer and one gated full-attention layer of
            Qwen3-Next-80B-A3B's shape, and one attention layer of Qwen3-30B-A3B's (random bf16 weights,
            caches of random rows), scaled to the full models' 36 + 12 and 48 layers:
              jindouctl bench linear-attention --contexts 1024,8192,32768
            Then prefill: the delta rule alone over runs of --delta-rule-tokens tokens (Qwen3-Next's and
            Kimi-Linear's shapes), token by token against the chunked form in chunks of each of
            --delta-rule-chunks, and one whole Gated DeltaNet layer prefilling --prefill-tokens tokens
            both ways.
            Writes the 'linear-attention' section of --out, the JSON results and the memory plot.
            Build with -c release; JINDOU_THREADS sets the kernel threads.
            """
    )

    @Option(help: "Context lengths (cached positions), comma-separated.")
    var contexts: String = "1024,8192,32768"
    @Option(help: "Timed steps per measurement (the fastest is kept).")
    var repetitions: Int = 3
    @Option(help: "Where the synthetic checkpoints are written (reused when present).")
    var checkpoint: String = NSTemporaryDirectory() + "jindou-bench-linear"
    @Option(help: "Markdown file to update.")
    var out: String = "docs/benchmarks.md"
    @Option(help: "JSON results file.")
    var json: String = "docs/benchmarks/linear-attention.json"
    @Option(help: "PNG plot of memory per sequence by context.")
    var plot: String = "docs/benchmarks/linear-attention-memory.png"

    @Option(help: "Tokens in the one-layer prefill measurement.")
    var prefillTokens: Int = 4096
    @Option(help: "Run lengths of the delta-rule prefill measurement, comma-separated.")
    var deltaRuleTokens: String = "16,64,256,1024,4096"
    @Option(help: "Chunk sizes of the chunked form in the delta-rule measurement, comma-separated.")
    var deltaRuleChunks: String = "16,64"

    var contextLengths: [Int] { contexts.split(separator: ",").compactMap { Int($0) } }
    var deltaRuleLengths: [Int] { deltaRuleTokens.split(separator: ",").compactMap { Int($0) } }
    var deltaRuleChunkSizes: [Int] { deltaRuleChunks.split(separator: ",").compactMap { Int($0) } }

    func validate() throws {
        guard !contextLengths.isEmpty, contextLengths.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 }) else {
            throw ValidationError("--contexts: e.g. 1024,8192,32768 (each 1…1048576)")
        }
        guard prefillTokens >= 1 && prefillTokens <= 1 << 16 else { throw ValidationError("--prefill-tokens must be 1…65536") }
        guard !deltaRuleLengths.isEmpty, deltaRuleLengths.allSatisfy({ $0 >= 1 && $0 <= 1 << 16 }) else {
            throw ValidationError("--delta-rule-tokens: e.g. 16,64,4096 (each 1…65536)")
        }
        guard !deltaRuleChunkSizes.isEmpty, deltaRuleChunkSizes.allSatisfy({ $0 >= 1 && $0 <= 1024 }) else {
            throw ValidationError("--delta-rule-chunks: e.g. 16,64 (each 1…1024)")
        }
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be ≥ 1") }
    }

    func run() throws {
        let benchmark = LinearAttentionBenchmark(options: .init(contexts: contextLengths, repetitions: repetitions, directory: checkpoint),
                                                 prefillTokens: prefillTokens, deltaRuleTokens: deltaRuleLengths,
                                                 deltaRuleChunks: deltaRuleChunkSizes)
        do {
            let report = try benchmark.run { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }
            try BenchmarkReport.writeJSON(report, to: json)
            try Data(report.memoryPlot.pngData()).write(to: URL(fileURLWithPath: plot))
            try BenchmarkReport.replaceSection(named: "linear-attention", in: out, with: report.markdown)
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
    @Option(help: "Section of --out to replace (another name keeps the tables of another machine kind beside this one).")
    var section: String = "kernels"

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
            try BenchmarkReport.replaceSection(named: section, in: out, with: report.markdown)
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
    @Option(help: "Section of --out to replace (another name keeps the tables of another machine kind beside this one).")
    var section: String = "decode"

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
            try BenchmarkReport.replaceSection(named: section, in: out, with: markdown)
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

struct FuzzBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "Mutated and random frames at a worker, or misbehaving workers at a coordinator; counts crashes, hangs, bad replies.",
        discussion: """
            --against worker (default): starts a `jindoud worker` (all experts, a cluster secret) unless --target names a
            running one, then sends --cases connections, each random bytes, a mutated HELLO, or a valid HELLO and 1…8
            mutated frames of every kind. Every reply must be a frame a worker sends (ERRORs with defined codes); the
            worker must close each connection within --timeout of the half-close and pass a HELLO/PING health check
            every --health-every cases; at the end a valid SHARD_UPDATE and exact DISPATCHes must still work. Case i
            replays alone with --first-case i --cases 1.
            --against coordinator: starts a real worker and a `jindoud coordinator` pinned to it, joins --fake-workers
            fake workers through the node-facing HTTP routes and, for --seconds, answers every connection the
            coordinator opens to them with mutated WELCOMEs and replies, while chat completions must all succeed.
              jindouctl bench fuzz --model Tests/Fixtures/qwen3-moe-tiny --cases 300000
              jindouctl bench fuzz --model Tests/Fixtures/qwen3-moe-tiny --against coordinator --seconds 600
            Writes the 'fuzz' (or 'fuzz-coordinator') section of --out and the JSON results; exits 1 if anything failed.
            """
    )

    @Option(help: "Checkpoint directory or GGUF file (the worker's --model).") var model: String
    @Option(help: "worker or coordinator.") var against: String = "worker"
    @Option(help: "Connections (cases) to run against a worker (300000 send over 10^6 fuzzed frames).") var cases: Int = 300_000
    @Option(name: .customLong("first-case"), help: "Index of the first case (to replay one).") var firstCase: Int = 0
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: "Concurrent connections (against a worker).") var lanes: Int = 2
    @Option(help: "Seconds the worker has to close a connection after the half-close.") var timeout: Int = 10
    @Option(name: .customLong("health-every"), help: "Cases between health checks.") var healthEvery: Int = 5000
    @Option(help: "Seconds to run against a coordinator.") var seconds: Double = 600
    @Option(name: .customLong("fake-workers"), help: "Fake workers joined to the coordinator.") var fakeWorkers: Int = 32
    @Option(help: "A running worker, host:port (default: start one).") var target: String?
    @Option(name: .customLong("token-file"), help: "The running worker's cluster secret (with --target).") var tokenFile: String?
    @Option(help: "Markdown file to update.") var out: String = "docs/reliability.md"
    @Option(help: "JSON results file (default: docs/reliability/fuzz.json or fuzz-coordinator.json).") var json: String?
    @Option(name: .customLong("log-dir"), help: "Where the started processes' logs go.") var logDirectory: String = "/tmp"

    func validate() throws {
        guard cases >= 1, firstCase >= 0, lanes >= 1, timeout >= 1, healthEvery >= 1, seconds > 0, fakeWorkers >= 1 else {
            throw ValidationError("--cases, --lanes, --timeout, --health-every, --seconds and --fake-workers must be positive, --first-case ≥ 0")
        }
        guard against == "worker" || against == "coordinator" else { throw ValidationError("--against: worker or coordinator") }
        if let target, Endpoint(target) == nil { throw ValidationError("--target: expected host:port") }
        if target != nil && against != "worker" { throw ValidationError("--target goes with --against worker") }
        if tokenFile != nil && target == nil { throw ValidationError("--token-file goes with --target") }
    }

    func run() throws {
        do {
            let report: (markdown: String, passed: Bool)
            if against == "worker" {
                report = try fuzzWorker()
                try BenchmarkReport.replaceSection(named: "fuzz", in: out, with: report.markdown)
            } else {
                report = try fuzzCoordinator()
                try BenchmarkReport.replaceSection(named: "fuzz-coordinator", in: out, with: report.markdown)
            }
            print(report.markdown)
            if !report.passed { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw CLIError(error)
        }
    }

    /// A fresh cluster secret in a scratch directory: (secret, token file).
    func scratchSecret() throws -> (ClusterSecret, String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jindou-fuzz-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let token = ClusterSecret.generate()
        let path = directory.appendingPathComponent("token").path
        FileManager.default.createFile(atPath: path, contents: Data(token.utf8), attributes: [.posixPermissions: 0o600])
        return (try ClusterSecret(token: token), path)
    }

    func fuzzWorker() throws -> (markdown: String, passed: Bool) {
        var worker: LaunchedWorker?
        defer { worker?.stop() }
        let endpoint: Endpoint
        let secret: ClusterSecret?
        if let target {
            endpoint = Endpoint(target)!
            secret = try tokenFile.map { try ClusterSecret(contentsOfFile: $0) }
        } else {
            let (scratch, tokenPath) = try scratchSecret()
            defer { try? FileManager.default.removeItem(atPath: (tokenPath as NSString).deletingLastPathComponent) }
            secret = scratch
            let (_, jindoud) = benchmarkEnvironment()
            let launched = try LaunchedWorker(jindoud: jindoud, model: model, experts: "all", name: "fuzz-target",
                                              extraArguments: ["--token-file", tokenPath], errorLog: logDirectory + "/jindou-fuzz-worker.log")
            worker = launched
            endpoint = launched.endpoint
        }
        let fuzzer = try FrameFuzzer(options: .init(target: endpoint, cases: cases, firstCase: firstCase, seed: seed, lanes: lanes,
                                                    secret: secret, replyTimeoutSeconds: timeout, healthEvery: healthEvery,
                                                    workerPID: worker?.process.processIdentifier), model: model)
        let report = try fuzzer.run { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        try BenchmarkReport.writeJSON(report, to: json ?? "docs/reliability/fuzz.json")
        return (report.markdown, report.passed)
    }

    func fuzzCoordinator() throws -> (markdown: String, passed: Bool) {
        let (secret, tokenPath) = try scratchSecret()
        let scratch = (tokenPath as NSString).deletingLastPathComponent
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let (_, jindoud) = benchmarkEnvironment()
        let worker = try LaunchedWorker(jindoud: jindoud, model: model, experts: "all", name: "real",
                                        extraArguments: ["--token-file", tokenPath], errorLog: logDirectory + "/jindou-fuzz-real-worker.log")
        defer { worker.stop() }
        let experts = try openWeightSource(model).modelDescription().expertCount
        let placement = scratch + "/placement.json"
        try Data(#"{"version": 1, "workers": ["real"], "shards": [{"worker": "real", "experts": "0-\#(experts - 1)"}]}"#.utf8)
            .write(to: URL(fileURLWithPath: placement))
        let coordinator = try LaunchedCoordinator(jindoud: jindoud, arguments: [
            "coordinator", "--model", model, "--listen", "127.0.0.1:0", "--workers", worker.endpoint.description, "--placement", placement,
            "--token-file", tokenPath, "--heartbeat", "0.1", "--unreachable-after", "1", "--gone-after", "100000", "--log-level", "error",
        ], errorLog: logDirectory + "/jindou-fuzz-coordinator.log")
        defer { coordinator.stop() }
        let frames = try FrameFuzzer(options: .init(target: worker.endpoint, cases: 0, seed: seed, secret: secret), model: model)
        let name = URL(fileURLWithPath: model).lastPathComponent
        let fuzzer = CoordinatorFuzzer(options: .init(coordinator: coordinator.endpoint, secret: secret, fakeWorkers: fakeWorkers, seconds: seconds,
                                                      seed: seed, servedModelName: name, coordinatorPID: coordinator.process.processIdentifier),
                                       frames: frames)
        let report = try fuzzer.run { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        try BenchmarkReport.writeJSON(report, to: json ?? "docs/reliability/fuzz-coordinator.json")
        return (report.markdown, report.passed)
    }
}

/// A `jindoud coordinator` child process, ready once it printed `ready URL`.
final class LaunchedCoordinator {
    let process = Process()
    let endpoint: Endpoint

    init(jindoud: String, arguments: [String], errorLog: String) throws {
        process.executableURL = URL(fileURLWithPath: jindoud)
        process.arguments = arguments
        _ = FileManager.default.createFile(atPath: errorLog, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: errorLog)
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        guard let endpoint = readyEndpoint(stdout) else {
            process.terminate()
            throw CLIError(message: "the coordinator did not start (log: \(errorLog))")
        }
        self.endpoint = endpoint
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}
