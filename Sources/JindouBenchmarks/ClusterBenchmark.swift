import Foundation
import JindouCoordinator
import JindouModel
import JindouNumerics
import JindouRouting
import JindouTransport
import JindouWire
import Logging
import NIOCore

/// Measures the cluster on one machine (issue: expert-parallel cluster, benchmark):
/// - per MoE layer, dispatch + combine time against a raw TCP round trip of the same
///   bytes on the same connection (PING/PONG echo) and against the experts' compute alone;
/// - decode tokens/s for the single-process engine and for 1…N workers;
/// - each worker's resident memory against its shard's bytes.
/// All processes share this machine's cores and memory bandwidth, so more workers cannot
/// be faster here; the numbers isolate Jindou's own overheads. Ratios are what to read.
public struct ClusterBenchmark {
    public struct Options: Sendable {
        public var modelDirectory: String
        public var workerCounts: [Int]
        public var promptTokens: Int
        public var decodeTokens: Int
        public var repetitions: Int
        public var jindoud: String
        public var wireDType: WireDType
        /// Each worker count runs once per transport (e.g. tcp then shm), same workers' spec.
        public var transports: [TransportChoice]

        public init(modelDirectory: String, workerCounts: [Int], promptTokens: Int = 16, decodeTokens: Int = 32,
                    repetitions: Int = 50, jindoud: String, wireDType: WireDType = .f32, transports: [TransportChoice] = [.tcp]) {
            self.transports = transports
            self.modelDirectory = modelDirectory
            self.workerCounts = workerCounts
            self.promptTokens = promptTokens
            self.decodeTokens = decodeTokens
            self.repetitions = repetitions
            self.jindoud = jindoud
            self.wireDType = wireDType
        }
    }

    public struct WorkerRun: Codable, Sendable {
        public var workers: Int
        /// What carried the data links ("tcp" or "shm"; absent in older reports).
        public var transport: String?
        public var decodeTokensPerSecond: Double
        public var ratioToSingleProcess: Double
        /// Mean seconds of one MoE layer's dispatch + combine (decode, 1 token).
        public var layerExchangeSeconds: Double
        /// Mean seconds of a PING/PONG carrying the same bytes, same connection.
        public var rawRoundTripSeconds: Double
        /// Mean seconds of the same experts computed in-process.
        public var computeSeconds: Double
        /// exchange − (round trip + compute): framing, routing split, scheduling.
        public var overheadSeconds: Double
        public var dispatchBytes: Int
        public var workerResidentBytes: [Int]
        public var workerExpertBytes: [Int]
    }

    public struct Report: Codable, Sendable {
        public var model: String
        public var machine: String
        public var date: String
        public var singleProcessTokensPerSecond: Double
        public var runs: [WorkerRun]
    }

    let options: Options
    let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    public func run() async throws -> Report {
        let description = try openWeightSource(options.modelDirectory).modelDescription()
        let prompt = (0..<options.promptTokens).map { ($0 * 7919 + 13) % description.vocabularySize }

        logger.notice("single-process engine")
        let single = try InferenceEngine.load(directory: options.modelDirectory, prefault: true)
        let singleRate = try await decodeRate(single, prompt: prompt)
        // Routing of one decode token at the first MoE layer, for the per-layer measurements.
        let layer = description.sparseLayers[0]
        let (hidden, routing) = try sampleRouting(single, layer: layer, prompt: prompt)
        let computeSeconds = try timeCompute(single, layer: layer, hidden: hidden, routing: routing)

        var runs: [WorkerRun] = []
        for count in options.workerCounts {
            for transport in options.transports {
                logger.notice("cluster", metadata: ["workers": "\(count)", "transport": "\(transport)"])
                let workers = try (0..<count).map { try LaunchedWorker(jindoud: options.jindoud, model: options.modelDirectory,
                                                                       experts: "contiguous:\($0)/\(count)", name: "bench-\($0)") }
                defer { workers.forEach { $0.stop() } }
                let coordinator = try await Coordinator.start(
                    .init(modelDirectory: options.modelDirectory, workers: workers.map(\.endpoint), placement: .contiguous,
                          wireDType: options.wireDType, prefault: true, transport: transport), logger: logger)
                let rate = try await decodeRate(coordinator.engine, prompt: prompt)
                guard let backend = coordinator.engine.experts as? ClusterExpertBackend else { fatalError("not a cluster backend") }
                let exchange = try await timeExchange(backend, layer: layer, hidden: hidden, routing: routing)
                let (roundTrip, bytes) = try await timeRoundTrip(backend, layer: layer, hidden: hidden, routing: routing)
                let infos = await coordinator.pool.workers
                runs.append(WorkerRun(
                    workers: count, transport: Set(await coordinator.pool.transports().values).sorted().joined(separator: "+"),
                    decodeTokensPerSecond: rate, ratioToSingleProcess: rate / singleRate,
                    layerExchangeSeconds: exchange, rawRoundTripSeconds: roundTrip, computeSeconds: computeSeconds,
                    overheadSeconds: exchange - roundTrip - computeSeconds, dispatchBytes: bytes,
                    workerResidentBytes: workers.map(\.residentBytes), workerExpertBytes: infos.map { Int($0.expertBytes) }))
                await coordinator.pool.closeAll()
            }
        }
        return Report(model: options.modelDirectory, machine: Self.machine, date: ISO8601DateFormatter().string(from: Date()),
                      singleProcessTokensPerSecond: singleRate, runs: runs)
    }

    func decodeRate(_ engine: InferenceEngine, prompt: [Int]) async throws -> Double {
        try await Self.decodeRate(engine, prompt: prompt, newTokens: options.decodeTokens)
    }

    /// Decode tokens/s of one generation of `newTokens` after a 2-token warm-up generation.
    static func decodeRate(_ engine: InferenceEngine, prompt: [Int], newTokens: Int) async throws -> Double {
        _ = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 2, stopTokenIDs: []))  // warm-up
        let result = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: newTokens, stopTokenIDs: []))
        return result.decodeTokensPerSecond
    }

    /// The hidden state and routing one decode token produces at `layer`.
    func sampleRouting(_ engine: InferenceEngine, layer: Int, prompt: [Int]) throws -> ([Float], RoutingDecision) {
        guard case .sparse(let router, _) = engine.model.layers[layer].feedForward else { fatalError("layer \(layer) is not sparse") }
        // Any realistic hidden state will do: an embedding row, normalised like the layer input.
        let h = engine.description.hiddenSize
        let row = engine.model.embedding.rows(prompt[0]..<(prompt[0] + 1)).floatValues()
        let scale = 1 / (row.reduce(0) { $0 + $1 * $1 } / Float(h) + 1e-6).squareRoot()
        let hidden = row.map { $0 * scale }
        let routing = hidden.withUnsafeBufferPointer { router.route(hidden: $0.baseAddress!, tokens: 1) { _ in .configured } }
        return (hidden, routing)
    }

    func timeCompute(_ engine: InferenceEngine, layer: Int, hidden: [Float], routing: RoutingDecision) throws -> Double {
        guard let shard = engine.experts as? ExpertShard else { fatalError("not a local shard") }
        _ = try shard.compute(layer: layer, hidden: hidden, tokenCount: 1, routing: routing)
        let start = ContinuousClock.now
        for _ in 0..<options.repetitions { _ = try shard.compute(layer: layer, hidden: hidden, tokenCount: 1, routing: routing) }
        return (ContinuousClock.now - start).seconds / Double(options.repetitions)
    }

    func timeExchange(_ backend: ClusterExpertBackend, layer: Int, hidden: [Float], routing: RoutingDecision) async throws -> Double {
        _ = try await backend.routedExperts(layer: layer, hidden: hidden, tokenCount: 1, routing: routing)
        let start = ContinuousClock.now
        for _ in 0..<options.repetitions { _ = try await backend.routedExperts(layer: layer, hidden: hidden, tokenCount: 1, routing: routing) }
        return (ContinuousClock.now - start).seconds / Double(options.repetitions)
    }

    /// PING/PONG carrying the dispatch's payload bytes to every worker the layer uses, concurrently.
    func timeRoundTrip(_ backend: ClusterExpertBackend, layer: Int, hidden: [Float], routing: RoutingDecision) async throws -> (Double, Int) {
        let shares = try backend.split(layer: layer, routing: routing, table: backend.routing.table)
        let payload = TensorPayload.encode(hidden, as: backend.wireDType, width: hidden.count)
        let pool = backend.pool
        let targets = shares.keys.sorted()
        func once() async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in targets {
                    group.addTask {
                        var frame = Heartbeat.frame(.ping, requestID: pool.nextRequestID())
                        frame.payload = payload
                        _ = try await pool.exchange(index, frame)
                    }
                }
                try await group.waitForAll()
            }
        }
        try await once()
        let start = ContinuousClock.now
        for _ in 0..<options.repetitions { try await once() }
        return ((ContinuousClock.now - start).seconds / Double(options.repetitions), payload.readableBytes * targets.count)
    }

    static var machine: String {
        let lines = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n") ?? []
        func field(_ name: String) -> String? {
            lines.first { $0.hasPrefix(name) }?.split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces)
        }
        let cpu = field("model name") ?? "unknown CPU"
        // Virtual machines often hide the model ("Intel(R) Xeon(R) Processor"): the vector
        // extensions the kernels can use say which kind of machine it was.
        let flags = Set((field("flags") ?? "").split(separator: " ").map(String.init))
        let extensions = ["avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_int8"].filter(flags.contains)
        return "\(cpu) (\(extensions.joined(separator: " "))), \(ProcessInfo.processInfo.activeProcessorCount) cores, "
            + "\(ProcessInfo.processInfo.physicalMemory >> 30) GiB, \(KernelDispatch.active.name) kernels"
    }

    /// The processor part of a `machine` line, for section headings: docs/benchmarks.md keeps
    /// one section per machine kind.
    static func processor(_ machine: String) -> String {
        machine.split(separator: ",").first.map(String.init) ?? "this machine"
    }
}

/// The endpoint of a daemon's `ready URL` line, the first line it prints (nil if it ends first).
public func readyEndpoint(_ stdout: Pipe) -> Endpoint? {
    var line: [UInt8] = []
    while true {
        let byte = stdout.fileHandleForReading.readData(ofLength: 1)
        if byte.isEmpty || byte.first == UInt8(ascii: "\n") { break }
        line += byte
    }
    let text = String(decoding: line, as: UTF8.self)
    return text.hasPrefix("ready ") ? Endpoint(String(text.dropFirst(6))) : nil
}

/// A `jindoud worker` child process.
public final class LaunchedWorker: @unchecked Sendable {
    // @unchecked: set once in init, then only signalled.
    public let process = Process()
    public let endpoint: Endpoint

    /// `wrapper` runs first (e.g. `ip netns exec NS taskset -c 0`) with jindoud and its
    /// arguments appended.
    public init(jindoud: String, model: String, experts: String, name: String, listen: String = "127.0.0.1:0",
         wrapper: [String] = [], extraArguments: [String] = [], errorLog: String? = nil) throws {
        let arguments = ["worker", "--model", model, "--listen", listen, "--experts", experts, "--name", name,
                         "--log-level", "warning"] + extraArguments
        if let errorLog {
            _ = FileManager.default.createFile(atPath: errorLog, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: errorLog)
        }
        if let command = wrapper.first {
            process.executableURL = URL(fileURLWithPath: command)
            process.arguments = Array(wrapper.dropFirst()) + [jindoud] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: jindoud)
            process.arguments = arguments
        }
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        guard let endpoint = readyEndpoint(stdout) else {
            process.terminate()
            throw BenchmarkError("worker \(name) did not start")
        }
        self.endpoint = endpoint
    }

    /// VmRSS of the process, in bytes.
    var residentBytes: Int {
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }

    public func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

struct BenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
