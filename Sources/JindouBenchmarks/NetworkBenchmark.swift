import Foundation
import JindouCoordinator
import JindouModel
import JindouServing
import JindouTransport
import JindouWire
import Logging

/// `jindouctl bench network`: Jindou against llama.cpp's RPC backend on the same GGUF files,
/// the same worker namespaces and the same emulated links, measured in one run.
///
/// Each "host" is a network namespace of the netns harness (cluster/netns/cluster.sh)
/// whose veth pair is shaped by `tc tbf` to the link rate; delay comes from `LinkRelay`s
/// in this process (the kernel has no netem), one per host and service. The link is
/// probed (`LinkProbe` against a `jindouctl link echo` in host 0, through its own relay)
/// before the engines run, so every row carries the RTT and goodput it was measured on.
///
/// - Jindou: a `jindoud worker` per host (`contiguous:i/n` of the experts, one kernel
///   thread), the coordinator in this process (root namespace): batch-1 decode and prefill
///   through `InferenceEngine.generate`, throughput at S streams through the
///   `BatchScheduler` with `--micro-batches 1` and `2`, and n-gram speculation at batch 1
///   on a repetitive prompt (with its greedy output checked against plain decoding).
/// - llama.cpp: a `ggml-rpc-server -t 1` per host (with its tensor cache, so weights cross
///   the link once), `llama-bench --rpc … -ngl 99` (all layers on the hosts, split by layer)
///   for tg and pp, and `llama-batched-bench` for S parallel sequences (S_TG).
///
/// Throughput is the decode phase: S × (tokens − 1) / (last token − the moment every
/// stream had its first), which is what llama-batched-bench's S_TG measures.
public struct NetworkBenchmark {
    public struct Options: Sendable {
        /// (label, GGUF file or checkpoint directory).
        public var models: [(String, String)]
        public var workerCounts: [Int]
        /// Added round-trip times, tc spelling ("0", "200us", "1ms").
        public var rtts: [String]
        /// Link rates ("1gbit", "10gbit"); nil: unshaped veth.
        public var rates: [String?]
        public var streams: [Int]
        public var decodeTokens: Int
        public var promptTokens: Int
        public var streamPromptTokens: Int
        public var wireDType: WireDType
        /// Directory holding ggml-rpc-server, llama-bench and llama-batched-bench (built with
        /// `tools/llama_cpp.sh --rpc`); nil: Jindou only.
        public var llamaBin: String?
        public var jindoud: String
        public var jindouctl: String
        public var harness: String

        public init(models: [(String, String)], workerCounts: [Int] = [2], rtts: [String] = ["0", "200us", "1ms"],
                    rates: [String?] = ["1gbit", "10gbit"], streams: [Int] = [8, 32], decodeTokens: Int = 33, promptTokens: Int = 64,
                    streamPromptTokens: Int = 16, wireDType: WireDType = .f32, llamaBin: String?, jindoud: String, jindouctl: String,
                    harness: String) {
            self.models = models
            self.workerCounts = workerCounts
            self.rtts = rtts
            self.rates = rates
            self.streams = streams
            self.decodeTokens = decodeTokens
            self.promptTokens = promptTokens
            self.streamPromptTokens = streamPromptTokens
            self.wireDType = wireDType
            self.llamaBin = llamaBin
            self.jindoud = jindoud
            self.jindouctl = jindouctl
            self.harness = harness
        }
    }

    public struct StreamFigures: Codable, Sendable {
        public var streams: Int
        /// Decode tokens/s of all streams together, `--micro-batches 1` and `2`.
        public var jindouOneMicroBatch: Double
        public var jindouTwoMicroBatches: Double
        public var llamaCpp: Double?

        public var overlapGain: Double { jindouTwoMicroBatches / jindouOneMicroBatch }
        public var bestJindou: Double { max(jindouOneMicroBatch, jindouTwoMicroBatches) }
        public var ratioToLlamaCpp: Double? { llamaCpp.map { bestJindou / $0 } }
    }

    public struct SpeculationFigures: Codable, Sendable {
        public var plainTokensPerSecond: Double
        public var ngramTokensPerSecond: Double
        public var acceptanceRate: Double
        public var tokensPerStep: Double
        public var draftsPerStep: Double
        /// Whether the speculative greedy output equalled the plain one.
        public var identical: Bool
        public var speedup: Double { ngramTokensPerSecond / plainTokensPerSecond }
    }

    /// What `LatencyModel` predicts for a row's measurements.
    public struct Predictions: Codable, Sendable {
        public var decodeTokensPerSecond: Double
        /// Per stream count: one and two micro-batches.
        public var streams: [Int: [Double]]
        public var speculationTokensPerSecond: Double
    }

    public struct Row: Codable, Sendable {
        public var model: String
        public var workers: Int
        public var rate: String?
        public var rtt: String
        public var link: LinkMeasurement
        public var jindouDecodeTokensPerSecond: Double
        public var jindouPrefillTokensPerSecond: Double
        public var llamaCppDecodeTokensPerSecond: Double?
        public var llamaCppPrefillTokensPerSecond: Double?
        public var streams: [StreamFigures]
        public var speculation: SpeculationFigures
        /// The latency model calibrated on the first (lowest) RTT of this model, host count
        /// and rate, moved onto this row's measured link.
        public var latencyModel: LatencyModel
        public var predicted: Predictions

        public var decodeRatio: Double? { llamaCppDecodeTokensPerSecond.map { jindouDecodeTokensPerSecond / $0 } }
    }

    public struct Report: Codable, Sendable {
        public var machine: String
        public var date: String
        public var wireDType: String
        /// Payload bytes per token per MoE layer and worker the token uses: dispatch, combine.
        public var dispatchBytesPerToken: Int
        public var combineBytesPerToken: Int
        public var hiddenSize: Int
        public var moeLayers: Int
        public var llamaCppCommit: String?
        public var rows: [Row]
    }

    let options: Options
    let logger: Logger
    static let prefix = "jdnet"
    static let workerPort = 7070, echoPort = 7171, rpcPort = 50052

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    public func run() async throws -> Report {
        let hosts = options.workerCounts.max() ?? 2
        var rows: [Row] = []
        var shape: ModelDescription?
        try harness(["down"], check: false)
        defer { try? harness(["down"], check: false) }
        for rate in options.rates {
            try harness(["down"], check: false)
            try harness(["up", String(hosts)] + (rate.map { ["--rate", $0] } ?? []))
            let echoes = try (0..<hosts).map { i in
                try ChildProcess(wrapper: namespace(i), [options.jindouctl, "link", "echo", "--listen", "\(address(i)):\(Self.echoPort)"],
                                 name: "echo-\(i)", readyPort: Endpoint(host: address(i), port: Self.echoPort))
            }
            defer { echoes.forEach { $0.stop() } }
            let rpcServers = try options.llamaBin.map { bin in
                try (0..<hosts).map { i in
                    try ChildProcess(wrapper: namespace(i), ["\(bin)/ggml-rpc-server", "-H", address(i), "-p", String(Self.rpcPort), "-t", "1", "-c"],
                                     name: "rpc-\(i)", readyPort: Endpoint(host: address(i), port: Self.rpcPort))
                }
            } ?? []
            defer { rpcServers.forEach { $0.stop() } }

            for (label, model) in options.models {
                let description = try openWeightSource(model).modelDescription()
                shape = shape ?? description
                for workers in options.workerCounts {
                    logger.notice("workers", metadata: ["model": "\(label)", "count": "\(workers)", "rate": "\(rate ?? "unshaped")"])
                    let launched = try (0..<workers).map { i in
                        try LaunchedWorker(jindoud: options.jindoud, model: model, experts: "contiguous:\(i)/\(workers)", name: "net-\(i)",
                                           listen: "\(address(i)):\(Self.workerPort)", wrapper: namespace(i), extraArguments: ["--threads", "1"])
                    }
                    defer { launched.forEach { $0.stop() } }
                    var calibration: LatencyModel?
                    for rtt in options.rtts.sorted(by: { (try? LinkUnits.seconds($0)) ?? 0 < (try? LinkUnits.seconds($1)) ?? 0 }) {
                        let profile = try LinkProfile(rtt: rtt)
                        let row = try await measure(label: label, model: model, description: description, workers: workers, rate: rate,
                                                    rtt: rtt, profile: profile, hasLlama: !rpcServers.isEmpty, calibration: calibration)
                        calibration = calibration ?? row.latencyModel
                        rows.append(row)
                    }
                }
            }
        }
        let width = shape?.hiddenSize ?? 0
        return Report(machine: ClusterBenchmark.machine, date: ISO8601DateFormatter().string(from: Date()), wireDType: options.wireDType.rawValue,
                      dispatchBytesPerToken: options.wireDType.payloadBytes(rows: 1, width: width),
                      combineBytesPerToken: options.wireDType.combineDType.payloadBytes(rows: 1, width: width),
                      hiddenSize: width, moeLayers: shape?.sparseLayers.count ?? 0,
                      llamaCppCommit: options.llamaBin.flatMap(Self.llamaCommit), rows: rows)
    }

    func measure(label: String, model: String, description: ModelDescription, workers: Int, rate: String?, rtt: String,
                 profile: LinkProfile, hasLlama: Bool, calibration: LatencyModel?) async throws -> Row {
        // One relay per host and service, all with this profile; none for 0 added delay.
        var relays: [LinkRelay] = []
        defer { let all = relays; Task { for relay in all { await relay.close() } } }
        func reach(_ host: Int, _ port: Int) async throws -> Endpoint {
            let target = Endpoint(host: address(host), port: port)
            guard !profile.isIdentity else { return target }
            let relay = try await LinkRelay(listen: Endpoint(host: "127.0.0.1", port: 0), target: target, profile: profile,
                                            seed: UInt64(host * 3 + port))
            relays.append(relay)
            return relay.endpoint
        }
        let echo = try await EchoClient(to: try await reach(0, Self.echoPort))
        let link = try await LinkProbe.measure(samples: 200, bulkBytes: 8 << 20, bulkRepetitions: 3) { try await echo.roundTrip($0) }
        await echo.close()
        logger.notice("link", metadata: ["rtt": "\(rtt)", "rate": "\(rate ?? "unshaped")", "measured": "\(link)"])

        var endpoints: [Endpoint] = []
        for i in 0..<workers { endpoints.append(try await reach(i, Self.workerPort)) }
        let coordinator = try await Coordinator.start(
            .init(modelDirectory: model, workers: endpoints, placement: .contiguous, wireDType: options.wireDType, prefault: true), logger: logger)
        defer { Task { await coordinator.pool.closeAll() } }
        let engine = coordinator.engine
        let vocabulary = description.vocabularySize

        // Batch 1: decode and prefill.
        let decodePrompt = (0..<options.streamPromptTokens).map { ($0 * 7919 + 13) % vocabulary }
        let decode = try await ClusterBenchmark.decodeRate(engine, prompt: decodePrompt, newTokens: options.decodeTokens)
        let prefillPrompt = (0..<options.promptTokens).map { ($0 * 104_729 + 7) % vocabulary }
        _ = try await engine.generate(GenerationRequest(promptTokenIDs: prefillPrompt, maxNewTokens: 1, stopTokenIDs: []))
        let prefill = try await engine.generate(GenerationRequest(promptTokenIDs: prefillPrompt, maxNewTokens: 1, stopTokenIDs: []))
        let prefillRate = Double(prefillPrompt.count) / prefill.prefillSeconds
        logger.notice("jindou batch 1", metadata: ["decode tok/s": "\(String(format: "%.2f", decode))",
                                                    "prefill tok/s": "\(String(format: "%.1f", prefillRate))"])

        // Concurrent streams, without and with two micro-batches.
        var streams: [StreamFigures] = []
        for count in options.streams {
            let one = try await streamRate(engine, streams: count, microBatches: .fixed(1), vocabulary: vocabulary)
            let two = try await streamRate(engine, streams: count, microBatches: .fixed(2), vocabulary: vocabulary)
            streams.append(StreamFigures(streams: count, jindouOneMicroBatch: one, jindouTwoMicroBatches: two, llamaCpp: nil))
            logger.notice("jindou streams", metadata: ["streams": "\(count)", "tok/s mb1": "\(String(format: "%.1f", one))",
                                                        "tok/s mb2": "\(String(format: "%.1f", two))"])
        }

        let speculation = try await speculationFigures(engine, vocabulary: vocabulary)

        // The latency model: calibrated here on the first row, else moved onto this link.
        let latency: LatencyModel
        if let calibration {
            latency = calibration.on(roundTripSeconds: link.roundTripSeconds, bytesPerSecond: link.bytesPerSecond)
        } else {
            let timed = TimedExpertBackend(engine.experts)
            var points: [(tokens: Double, stepSeconds: Double, exchangeSeconds: Double)] = []
            for sequences in [1, options.streams.max() ?? 8] {
                // The faster of two runs: the machine's noise only ever adds time.
                let a = try await calibrationPoint(engine.model, timed: timed, sequences: sequences, vocabulary: vocabulary)
                let b = try await calibrationPoint(engine.model, timed: timed, sequences: sequences, vocabulary: vocabulary)
                points.append(a.stepSeconds <= b.stepSeconds ? a : b)
            }
            let k = Double(description.router.expertsPerToken), w = Double(workers)
            let reach = 1 - pow(1 - 1 / w, k)   // share of tokens the busiest worker receives
            let bytes = Double(options.wireDType.payloadBytes(rows: 1, width: description.hiddenSize)
                + options.wireDType.combineDType.payloadBytes(rows: 1, width: description.hiddenSize)) * reach
            latency = LatencyModel.fit(moeLayers: description.sparseLayers.count, roundTripSeconds: link.roundTripSeconds,
                                       bytesPerSecond: link.bytesPerSecond, bytesPerTokenPerLayer: bytes, points: points,
                                       sharedCompute: true,
                                       expertReads: .init(experts: Double(description.expertCount), perToken: k,
                                                          onWorker: (Double(description.expertCount) / w).rounded(.up)))
        }
        var predictedStreams: [Int: [Double]] = [:]
        for s in options.streams {
            predictedStreams[s] = [1, 2].map { latency.decodeTokensPerSecond(sequences: s, microBatches: $0) }
        }
        let predicted = Predictions(
            decodeTokensPerSecond: latency.decodeTokensPerSecond(sequences: 1), streams: predictedStreams,
            speculationTokensPerSecond: latency.decodeTokensPerSecond(sequences: 1, drafts: speculation.draftsPerStep,
                                                                      tokensPerStep: speculation.tokensPerStep))
        await coordinator.pool.closeAll()

        var llamaDecode: Double?, llamaPrefill: Double?
        if hasLlama, let bin = options.llamaBin {
            var servers: [String] = []
            for i in 0..<workers { servers.append("\(try await reach(i, Self.rpcPort))") }
            let rpc = servers.joined(separator: ",")
            (llamaDecode, llamaPrefill) = try llamaBench(bin: bin, model: model, rpc: rpc)
            let parallel = try llamaBatchedBench(bin: bin, model: model, rpc: rpc)
            for i in streams.indices { streams[i].llamaCpp = parallel[streams[i].streams] }
            logger.notice("llama.cpp rpc", metadata: ["tg tok/s": "\(llamaDecode.map { String(format: "%.2f", $0) } ?? "-")",
                                                      "parallel": "\(parallel)"])
        }
        return Row(model: label, workers: workers, rate: rate, rtt: rtt, link: link, jindouDecodeTokensPerSecond: decode,
                   jindouPrefillTokensPerSecond: prefillRate, llamaCppDecodeTokensPerSecond: llamaDecode,
                   llamaCppPrefillTokensPerSecond: llamaPrefill, streams: streams, speculation: speculation,
                   latencyModel: latency, predicted: predicted)
    }

    /// One calibration point: mean seconds of a decode step of `sequences` sequences, and
    /// the part of it spent waiting for exchanges.
    func calibrationPoint(_ model: DecoderModel, timed: TimedExpertBackend, sequences: Int,
                          vocabulary: Int) async throws -> (tokens: Double, stepSeconds: Double, exchangeSeconds: Double) {
        let caches = (0..<sequences).map { _ in model.makeCache() }
        _ = try await model.forward(caches.enumerated().map { s, cache in
            SequenceStep(cache: cache, tokens: (0..<options.streamPromptTokens).map { ($0 * 7919 + s * 131 + 13) % vocabulary })
        }, experts: timed)
        let steps = 16
        timed.reset()
        let start = ContinuousClock.now
        for step in 0..<steps {
            _ = try await model.forward(caches.enumerated().map { SequenceStep(cache: $1, tokens: [(step * 31 + $0 * 7 + 1) % vocabulary]) },
                                        experts: timed)
        }
        let total = (ContinuousClock.now - start).seconds
        return (Double(sequences), total / Double(steps), timed.waitedSeconds / Double(steps))
    }

    /// Decode tokens/s of `streams` concurrent requests through a scheduler (S_TG's definition).
    func streamRate(_ engine: InferenceEngine, streams: Int, microBatches: MicroBatching, vocabulary: Int) async throws -> Double {
        let scheduler = BatchScheduler(engine: engine, options: .init(maximumStepTokens: max(512, streams * options.streamPromptTokens),
                                                                      maximumSequences: streams, microBatches: microBatches))
        let runner = Task { await scheduler.run() }
        defer { runner.cancel() }
        let start = ContinuousClock.now
        let timings = try await withThrowingTaskGroup(of: (Duration, Duration, Int).self) { group in
            for s in 0..<streams {
                let prompt = (0..<options.streamPromptTokens).map { ($0 * 7919 + s * 131 + 13) % vocabulary }
                let events = try await scheduler.submit(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: options.decodeTokens,
                                                                          stopTokenIDs: []))
                group.addTask {
                    var first: Duration?
                    var count = 0
                    for try await event in events {
                        if case .token = event {
                            count += 1
                            if first == nil { first = ContinuousClock.now - start }
                        }
                    }
                    return (first ?? .zero, ContinuousClock.now - start, count)
                }
            }
            var all: [(Duration, Duration, Int)] = []
            for try await timing in group { all.append(timing) }
            return all
        }
        await scheduler.stop()
        let decodeStart = timings.map(\.0).max()!
        let end = timings.map(\.1).max()!
        let tokens = timings.reduce(0) { $0 + $1.2 - 1 }
        return Double(tokens) / (end - decodeStart).seconds
    }

    /// Batch-1 greedy decoding of a repetitive prompt (a block of "code" and the same block
    /// with edits, as when a model rewrites a file), with and without n-gram drafts.
    func speculationFigures(_ engine: InferenceEngine, vocabulary: Int) async throws -> SpeculationFigures {
        let block = (0..<48).map { ($0 * 7919 + 101) % vocabulary }
        var edited = block
        for i in stride(from: 5, to: edited.count, by: 11) { edited[i] = (edited[i] + 17) % vocabulary }
        let prompt = block + edited + block.prefix(16)
        let request = GenerationRequest(promptTokenIDs: prompt, maxNewTokens: options.decodeTokens * 2, stopTokenIDs: [])
        _ = try await engine.generate(request)
        let plain = try await engine.generate(request)
        let ngram = try await engine.generate(request, speculation: SpeculationOptions(mode: .ngram, draftTokens: 4))
        let statistics = ngram.speculation ?? SpeculationStatistics()
        return SpeculationFigures(plainTokensPerSecond: plain.decodeTokensPerSecond, ngramTokensPerSecond: ngram.decodeTokensPerSecond,
                                  acceptanceRate: statistics.acceptanceRate,
                                  tokensPerStep: statistics.steps == 0 ? 1 : Double(statistics.tokens) / Double(statistics.steps),
                                  draftsPerStep: statistics.steps == 0 ? 0 : Double(statistics.drafted) / Double(statistics.steps),
                                  identical: plain.tokenIDs == ngram.tokenIDs)
    }

    /// llama-bench's tg and pp over RPC: (decode tok/s, prefill tok/s).
    func llamaBench(bin: String, model: String, rpc: String) throws -> (Double?, Double?) {
        let output = try ChildProcess.output(["\(bin)/llama-bench", "-m", model, "--rpc", rpc, "-ngl", "99", "-t", "2", "-r", "3",
                                              "-p", String(options.promptTokens), "-n", String(options.decodeTokens - 1), "-o", "json"])
        guard let start = output.firstIndex(of: "["), let end = output.lastIndex(of: "]"),
              let rows = try JSONSerialization.jsonObject(with: Data(output[start...end].utf8)) as? [[String: Any]] else {
            throw BenchmarkError("llama-bench printed no JSON results: \(output.suffix(400))")
        }
        let decode = rows.first { ($0["n_gen"] as? Int ?? 0) > 0 }?["avg_ts"] as? Double
        let prefill = rows.first { ($0["n_prompt"] as? Int ?? 0) > 0 }?["avg_ts"] as? Double
        return (decode, prefill)
    }

    /// llama-batched-bench's S_TG for each stream count.
    func llamaBatchedBench(bin: String, model: String, rpc: String) throws -> [Int: Double] {
        let most = options.streams.max() ?? 1
        let context = most * (options.streamPromptTokens + options.decodeTokens) + 64
        let output = try ChildProcess.output(["\(bin)/llama-batched-bench", "-m", model, "--rpc", rpc, "-ngl", "99", "-t", "2",
                                              "-c", String(context), "-b", "2048", "-ub", "512",
                                              "-npp", String(options.streamPromptTokens), "-ntg", String(options.decodeTokens - 1),
                                              "-npl", options.streams.map(String.init).joined(separator: ","), "--output-format", "jsonl"])
        var figures: [Int: Double] = [:]
        for line in output.split(separator: "\n") where line.hasPrefix("{") {
            guard let row = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let parallel = row["pl"] as? Int, let speed = row["speed_tg"] as? Double else { continue }
            figures[parallel] = speed
        }
        return figures
    }

    static func llamaCommit(_ bin: String) -> String? {
        guard let output = try? ChildProcess.output(["\(bin)/llama-bench", "--version"]) else { return nil }
        return output.split(separator: "\n").first { $0.contains("version") }.map(String.init)
    }

    func namespace(_ i: Int) -> [String] { ["/usr/sbin/ip", "netns", "exec", "\(Self.prefix)-h\(i)"] }
    func address(_ i: Int) -> String { "10.77.\(i).2" }

    func harness(_ arguments: [String], check: Bool = true) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [options.harness] + arguments + ["--prefix", Self.prefix]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = check ? FileHandle.standardError : FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        if check && process.terminationStatus != 0 {
            throw BenchmarkError("\(options.harness) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus) (needs root and iproute2)")
        }
    }
}

/// A helper process of a benchmark (echo server, rpc-server), ready once its port accepts.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: set once in init, then only signalled.
    let process = Process()

    init(wrapper: [String], _ command: [String], name: String, readyPort: Endpoint, timeoutSeconds: Double = 30) throws {
        let all = wrapper + command
        process.executableURL = URL(fileURLWithPath: all[0])
        process.arguments = Array(all.dropFirst())
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while !Self.accepts(readyPort) {
            guard process.isRunning, Date() < deadline else {
                stop()
                throw BenchmarkError("\(name) (\(command.joined(separator: " "))) did not start listening on \(readyPort)")
            }
            usleep(50_000)
        }
    }

    /// SIGTERM, then SIGKILL after two seconds (ggml-rpc-server ignores SIGTERM while it
    /// waits in accept).
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(2)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Whether a TCP connection to `endpoint` succeeds (then closes it).
    static func accepts(_ endpoint: Endpoint) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(endpoint.port).bigEndian)
        guard inet_pton(AF_INET, endpoint.host, &address.sin_addr) == 1 else { return false }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// Runs a command to completion; its stdout and stderr together.
    static func output(_ command: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw BenchmarkError("\(command[0]) exited with \(process.terminationStatus): \(text.suffix(600))")
        }
        return text
    }
}

extension NetworkBenchmark.Report {
    public var markdown: String {
        func rate(_ r: Double?) -> String { r.map { String(format: $0 >= 100 ? "%.0f" : "%.1f", $0) } ?? "–" }
        func ratio(_ r: Double?) -> String { r.map { String(format: "%.2f×", $0) } ?? "–" }
        var lines = [
            "## Across emulated links: Jindou vs llama.cpp RPC (`jindouctl bench network`)",
            "",
            "Machine: \(machine). Run: \(date). llama.cpp: \(llamaCppCommit ?? "not run").",
            "Each worker host is a network namespace (veth, `tc tbf` at the rate); the added RTT comes from a userspace relay",
            "(no netem on this kernel); *measured* is the echo probe through the same relay and veth, in the same run.",
            "Jindou: one `jindoud worker --threads 1` per host (its shard of the experts), coordinator in the root namespace.",
            "llama.cpp: one `ggml-rpc-server -t 1` per host, `-ngl 99` (every layer on the hosts, split by layer).",
            "Wire: \(wireDType), \(dispatchBytesPerToken) B dispatch + \(combineBytesPerToken) B combine per token, MoE layer and worker used",
            "(hidden \(hiddenSize), \(moeLayers) MoE layers). Streams: decode tokens/s of all streams (S_TG); *mb* = `--micro-batches`.",
            "Every process shares this machine's 2 cores, so absolute rates are this machine's; read the ratios.",
            "",
        ]
        var header = "| model | hosts | rate | RTT +req / measured | batch 1 Jindou | llama.cpp | ratio | prefill Jindou | llama.cpp |"
        var rule = "|---|---|---|---|---|---|---|---|---|"
        let counts = rows.first?.streams.map(\.streams) ?? []
        for s in counts {
            header += " \(s) streams mb1 | mb2 | llama.cpp | ratio |"
            rule += "---|---|---|---|"
        }
        header += " n-gram batch 1 |"
        rule += "---|"
        lines += [header, rule]
        for row in rows {
            var line = "| \(row.model) | \(row.workers) | \(row.rate ?? "–") | \(row.rtt) / \(LinkUnits.format(seconds: row.link.roundTripSeconds))"
                + " | \(rate(row.jindouDecodeTokensPerSecond)) | \(rate(row.llamaCppDecodeTokensPerSecond)) | \(ratio(row.decodeRatio))"
                + " | \(rate(row.jindouPrefillTokensPerSecond)) | \(rate(row.llamaCppPrefillTokensPerSecond)) |"
            for s in row.streams {
                line += " \(rate(s.jindouOneMicroBatch)) | \(rate(s.jindouTwoMicroBatches)) (\(ratio(s.overlapGain))) | \(rate(s.llamaCpp)) | \(ratio(s.ratioToLlamaCpp)) |"
            }
            let spec = row.speculation
            line += String(format: " %.2f× (%.0f %% accepted, %.2f tok/step)%@ |", spec.speedup, spec.acceptanceRate * 100, spec.tokensPerStep,
                           spec.identical ? "" : " OUTPUT DIFFERS")
            lines.append(line)
        }
        lines += ["", "### The latency model against these measurements (docs/performance.md)", "",
                  "Calibrated on each group's lowest-RTT row (coordinator and worker time at 1 and \(counts.max() ?? 0) sequences),",
                  "then moved onto each row's *measured* link; cells are measured / predicted (error). The busiest worker's time",
                  "grows with the experts a step touches on it (expected distinct experts of K per token), not with the tokens.", ""]
        var modelHeader = "| model | hosts | rate | RTT measured | batch 1 |"
        var modelRule = "|---|---|---|---|---|"
        for s in counts {
            modelHeader += " \(s) streams mb1 | mb2 |"
            modelRule += "---|---|"
        }
        modelHeader += " n-gram batch 1 | c fixed ms | c per token ms | w fixed ms/layer | w per touched expert ms/layer |"
        modelRule += "---|---|---|---|---|"
        lines += [modelHeader, modelRule]
        func cell(_ measured: Double, _ predicted: Double?) -> String {
            guard let predicted, predicted > 0 else { return rate(measured) }
            return "\(rate(measured)) / \(rate(predicted)) (\(String(format: "%+.0f", (predicted / measured - 1) * 100)) %)"
        }
        for row in rows {
            let m = row.latencyModel
            var line = "| \(row.model) | \(row.workers) | \(row.rate ?? "–") | \(LinkUnits.format(seconds: row.link.roundTripSeconds))"
                + " | \(cell(row.jindouDecodeTokensPerSecond, row.predicted.decodeTokensPerSecond)) |"
            for s in row.streams {
                let p = row.predicted.streams[s.streams]
                line += " \(cell(s.jindouOneMicroBatch, p?[0])) | \(cell(s.jindouTwoMicroBatches, p?[1])) |"
            }
            line += " \(cell(row.speculation.ngramTokensPerSecond, row.predicted.speculationTokensPerSecond))"
            line += String(format: " | %.2f | %.3f | %.3f | %.4f |", m.coordinatorFixedSeconds * 1e3, m.coordinatorPerTokenSeconds * 1e3,
                           m.workerFixedSeconds * 1e3, m.workerPerTokenSeconds * 1e3)
            lines.append(line)
        }
        // What one more millisecond of RTT costs a batch-1 token: Jindou pays a round trip per
        // MoE layer, a layer split a few per host.
        lines += ["", "Round trips per batch-1 token (the slope of seconds per token over the added RTT, lowest to highest RTT):", ""]
        lines += ["| model | hosts | rate | Jindou | llama.cpp RPC | crossover RTT (batch 1) |", "|---|---|---|---|---|---|"]
        let groups = Dictionary(grouping: rows) { "\($0.model)|\($0.workers)|\($0.rate ?? "")" }
        for key in groups.keys.sorted() {
            let group = groups[key]!.sorted { $0.link.roundTripSeconds < $1.link.roundTripSeconds }
            guard let low = group.first, let high = group.last, high.link.roundTripSeconds > low.link.roundTripSeconds else { continue }
            let span = high.link.roundTripSeconds - low.link.roundTripSeconds
            let jindou = (1 / high.jindouDecodeTokensPerSecond - 1 / low.jindouDecodeTokensPerSecond) / span
            var llama: Double?
            var crossover = "–"
            if let a = low.llamaCppDecodeTokensPerSecond, let b = high.llamaCppDecodeTokensPerSecond {
                let slope = (1 / b - 1 / a) / span
                llama = slope
                // Seconds per token: Jindou t_j + s_j·r, llama.cpp t_l + s_l·r; equal at r*.
                let tj = 1 / low.jindouDecodeTokensPerSecond - jindou * low.link.roundTripSeconds
                let tl = 1 / a - slope * low.link.roundTripSeconds
                if jindou > slope, tl > tj {
                    crossover = LinkUnits.format(seconds: (tl - tj) / (jindou - slope)) + " (llama.cpp faster above)"
                } else if jindou <= slope {
                    crossover = "none (Jindou pays fewer round trips)"
                } else {
                    crossover = "none (llama.cpp faster at every RTT)"
                }
            }
            lines.append("| \(low.model) | \(low.workers) | \(low.rate ?? "–") | \(String(format: "%.1f", jindou)) | "
                + "\(llama.map { String(format: "%.1f", $0) } ?? "–") | \(crossover) |")
        }
        return lines.joined(separator: "\n")
    }
}
