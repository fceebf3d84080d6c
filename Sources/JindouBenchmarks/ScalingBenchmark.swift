import Foundation
import JindouCoordinator
import JindouModel
import JindouTransport
import Logging

/// `jindouctl bench scaling`: decode tokens/s with 1, 2, 3… workers, each in its own network
/// namespace ("host", cluster/netns/cluster.sh) and pinned to one core (`taskset`, one
/// kernel thread), as a ratio to one worker. The coordinator runs in this process in the
/// root namespace, unpinned. On a machine with fewer cores than workers, workers share
/// cores round-robin (the table says which core each has), so the ratio shows what the
/// cores and the memory bus allow, not only Jindou.
public struct ScalingBenchmark {
    public struct Options: Sendable {
        public var model: String
        public var workerCounts: [Int]
        public var decodeTokens: Int
        public var jindoud: String
        public var harness: String
        /// Added round-trip time of each worker's link (a `LinkRelay`), tc spelling.
        public var delay: String?

        public init(model: String, workerCounts: [Int], decodeTokens: Int = 32, jindoud: String, harness: String, delay: String? = nil) {
            self.model = model
            self.workerCounts = workerCounts
            self.decodeTokens = decodeTokens
            self.jindoud = jindoud
            self.harness = harness
            self.delay = delay
        }
    }

    public struct Run: Codable, Sendable {
        public var workers: Int
        /// The core each worker is pinned to.
        public var cores: [Int]
        public var decodeTokensPerSecond: Double
        public var ratioToOneWorker: Double
        public var workerResidentBytes: [Int]
        public var workerExpertBytes: [Int]
    }

    public struct Report: Codable, Sendable {
        public var model: String
        public var machine: String
        public var date: String
        public var delay: String?
        public var runs: [Run]
    }

    let options: Options
    let logger: Logger
    static let prefix = "jdscale"

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    public func run() async throws -> Report {
        let description = try openWeightSource(options.model).modelDescription()
        let prompt = (0..<16).map { ($0 * 7919 + 13) % description.vocabularySize }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let hosts = options.workerCounts.max() ?? 1
        try harness(["down"], check: false)
        try harness(["up", String(hosts)])
        let profile = try LinkProfile(rtt: options.delay)
        defer { try? harness(["down"], check: false) }

        var runs: [Run] = []
        for count in options.workerCounts {
            logger.notice("workers", metadata: ["count": "\(count)"])
            let pinned = (0..<count).map { $0 % cores }
            let workers = try (0..<count).map { i in
                try LaunchedWorker(
                    jindoud: options.jindoud, model: options.model, experts: "contiguous:\(i)/\(count)", name: "scale-\(i)",
                    listen: "10.77.\(i).2:0", wrapper: ["/usr/sbin/ip", "netns", "exec", "\(Self.prefix)-h\(i)", "taskset", "-c", String(pinned[i])],
                    extraArguments: ["--threads", "1"])
            }
            defer { workers.forEach { $0.stop() } }
            var relays: [LinkRelay] = []
            for worker in workers where !profile.isIdentity {
                relays.append(try await LinkRelay(listen: Endpoint(host: "127.0.0.1", port: 0), target: worker.endpoint, profile: profile))
            }
            let endpoints = profile.isIdentity ? workers.map(\.endpoint) : relays.map(\.endpoint)
            let coordinator = try await Coordinator.start(
                .init(modelDirectory: options.model, workers: endpoints, placement: .contiguous, wireDType: .f32, prefault: true),
                logger: logger)
            let rate = try await ClusterBenchmark.decodeRate(coordinator.engine, prompt: prompt, newTokens: options.decodeTokens + 1)
            let infos = await coordinator.pool.workers
            runs.append(Run(workers: count, cores: pinned, decodeTokensPerSecond: rate,
                            ratioToOneWorker: rate / (runs.first?.decodeTokensPerSecond ?? rate),
                            workerResidentBytes: workers.map(\.residentBytes), workerExpertBytes: infos.map { Int($0.expertBytes) }))
            logger.notice("decode", metadata: ["workers": "\(count)", "tokens/s": "\(String(format: "%.2f", rate))"])
            await coordinator.pool.closeAll()
            for relay in relays { await relay.close() }
        }
        return Report(model: options.model, machine: ClusterBenchmark.machine, date: ISO8601DateFormatter().string(from: Date()),
                      delay: options.delay, runs: runs)
    }

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

extension ScalingBenchmark.Report {
    public var markdown: String {
        func mb(_ b: Int) -> String { String(format: "%.0f", Double(b) / 1e6) }
        var lines = [
            "## Scaling: workers in network namespaces, one pinned core each (`jindouctl bench scaling`)",
            "",
            "Model: `\(model)`. Machine: \(machine). Run: \(date). Added RTT (userspace relay): \(delay ?? "none").",
            "Each worker runs in its own namespace behind a veth pair, `taskset` to one core with one kernel thread;",
            "the coordinator (attention, router, LM head) runs unpinned in the root namespace. With more workers",
            "than cores, workers share cores (the *cores* column), so the ratio is bounded by this machine.",
            "",
            "| workers | cores | decode tok/s | × 1 worker | worker RSS MB | worker expert MB |",
            "|---|---|---|---|---|---|",
        ]
        for r in runs {
            lines.append("| \(r.workers) | \(r.cores.map(String.init).joined(separator: ", ")) | "
                + String(format: "%.2f | %.2f", r.decodeTokensPerSecond, r.ratioToOneWorker)
                + " | \(r.workerResidentBytes.map(mb).joined(separator: ", ")) | \(r.workerExpertBytes.map(mb).joined(separator: ", ")) |")
        }
        return lines.joined(separator: "\n")
    }
}
