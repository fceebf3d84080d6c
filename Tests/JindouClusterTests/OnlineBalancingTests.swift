import Foundation
import JindouAdmin
import JindouBalancing
import JindouCoordinator
import JindouImages
import JindouModel
import JindouPlacement
import JindouRouting
import JindouTestSupport
import JindouWire
import Testing

/// The sliding-window store on its own (buckets roll over, old seconds drop out) and the
/// serving-bias record of the cluster state log.
@Suite("Load window and serving-bias record")
struct LoadWindowTests {
    @Test func windowKeepsOnlyTheLastSeconds() {
        let statistics = LoadStatistics(expertCount: 4, sparseLayers: [0, 2], windowSeconds: 3)
        var counts = LoadStatistics.WorkerCounts()
        counts.assignments = 4
        counts.dispatches = 1
        counts.activatedExperts = 2
        for second in Int64(0)..<5 {
            statistics.record(layer: 0, experts: [0, 1, 0, 1], tokens: 2, workers: [("a", counts)], second: second)
            statistics.record(layer: 2, experts: [3, 3, 2, 3], tokens: 2, workers: [("b", counts)], second: second)
            statistics.record(layer: 1, experts: [0], tokens: 2, workers: [], second: second)  // dense: ignored
        }
        let window = statistics.window(at: 4)
        #expect(window.tokens == 6)  // seconds 2, 3, 4; counted at the first sparse layer only
        #expect(window.experts[0] == [6, 6, 0, 0])
        #expect(window.experts[2] == [0, 0, 3, 9])
        #expect(window.workers["a"]?.assignments == 12 && window.workers["b"]?.dispatches == 3)
        #expect(statistics.total.tokens == 10)
        #expect(statistics.window(at: 10).experts.isEmpty)
    }

    @Test func servingBiasRecordRoundTripsThroughTheStateLog() throws {
        let directory = Scratch.directory + "jindou-state-\(UUID().uuidString)"
        let bias = ["0": [Float](repeating: 0.001, count: 8), "2": [0.05, -0.05, 0, 0, 0, 0, 0, 0.0125]]
        let (log, _) = try ClusterStateLog.open(directory: directory)
        try log.append([.settings(replicas: 1, pinned: false), .servingBias(bias)])
        let (_, records) = try ClusterStateLog.open(directory: directory)
        #expect(records == [.settings(replicas: 1, pinned: false), .servingBias(bias)])
    }
}

/// Serving-time balancing and load statistics on real processes (qwen3-moe-tiny: 8
/// experts, K = 2, three sparse layers).
@Suite("Online balancing", .serialized)
struct OnlineBalancingTests {
    let fixture = "qwen3-moe-tiny"
    let sparseLayers = 3
    let expertsPerToken = 2

    func tokenFile() throws -> String {
        let path = Scratch.directory + "jindou-token-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(ClusterSecret.generate().utf8), attributes: [.posixPermissions: 0o600])
        return path
    }

    func timing() -> [String] { ["--heartbeat", "0.1", "--unreachable-after", "0.6", "--gone-after", "3"] }

    func cluster(_ arguments: [String], workers: Int, token: String, port: Int = 0) async throws
        -> (CoordinatorProcess, [WorkerProcess], AdminClient) {
        let coordinator = try CoordinatorProcess(fixture: fixture, port: port, arguments: ["--token-file", token] + timing() + arguments)
        var started: [WorkerProcess] = []
        for i in 0..<workers {
            started.append(try WorkerProcess(fixture: fixture, experts: nil, name: "w\(i)",
                                             extraArguments: ["--join", coordinator.url, "--token-file", token]))
        }
        let client = try AdminClient(coordinator.url, token: try ClusterSecret(contentsOfFile: token).token, timeoutSeconds: 30)
        try await settled(client, "\(workers) workers serve every expert") { $0.workers.filter { $0.state == "ready" }.count == workers }
        return (coordinator, started, client)
    }

    func settled(_ client: AdminClient, _ what: String, _ extra: @escaping (ClusterStatus) -> Bool = { _ in true }) async throws {
        try await eventually(.seconds(60), what) {
            let s = try await client.get("v1/admin/status", as: ClusterStatus.self)
            return s.settled && s.servedExperts == s.totalExperts && extra(s)
        }
    }

    /// The current load window once it holds traffic: on a busy machine the request stream
    /// can take longer than a window to get going, and an empty window has no max/mean.
    func trafficWindow(_ client: AdminClient, _ what: String) async throws -> LoadWindowReport {
        var found: LoadWindowReport?
        try await eventually(.seconds(60), what) {
            found = try await client.get("v1/admin/load", as: LoadReport.self).window
            return (found?.tokens ?? 0) > 0 && found?.stepMaxOverMean != nil
        }
        return try #require(found)
    }

    /// (c) Per-worker assignments add up to tokens × K per sparse layer; activated experts
    /// per step never exceed what a worker hosts.
    @Test func windowedStatisticsAddUp() async throws {
        let token = try tokenFile()
        let (coordinator, workers, client) = try await cluster(["--load-window", "60"], workers: 2, token: token)
        defer { workers.forEach { $0.stop() }; coordinator.stop() }
        for i in 0..<6 {
            let body = GenerationRequestBody(promptIDs: [3 + i, 14, 15, 92], maxNewTokens: 3, ignoreEOS: true)
            _ = try await client.post("v1/jindou/generate", body, as: GenerationReport.self)
        }
        let report = try await client.get("v1/admin/load", as: LoadReport.self)
        let window = try #require(report.window)
        #expect(window.tokens > 0 && window.tokens == report.tokens)
        #expect(window.assignments == window.tokens * expertsPerToken * sparseLayers)
        #expect(window.layers.count == sparseLayers)
        for layer in window.layers { #expect(layer.experts.reduce(0, +) == window.tokens * expertsPerToken) }
        #expect(abs(window.workers.reduce(0) { $0 + $1.share } - 1) < 1e-9)
        for worker in window.workers {
            #expect(worker.dispatches > 0 && worker.bytesSent > 0 && worker.bytesReceived > 0 && worker.dispatchSeconds > 0)
            // The worker's own compute time comes back in its replies and is part of the round trip.
            #expect(worker.computeSeconds > 0 && worker.computeSeconds < worker.dispatchSeconds)
            #expect(worker.activatedExpertsPerStep >= 1 && worker.activatedExpertsPerStep <= Double(worker.hostedExperts))
        }
        #expect(report.bias == nil)

        // jindouctl load prints the same window.
        let ctl = try Executable("jindouctl")
        let text = try ctl.run(["load", "--coordinator", coordinator.url, "--token-file", token, "--layer", "0"])
        #expect(text.status == 0, "\(text.stderr)")
        let printed = String(decoding: text.stdout, as: UTF8.self)
        #expect(printed.contains("tokens \(window.tokens)") && printed.contains("w0") && printed.contains("layer 0 experts:"))
        let json = try ctl.run(["load", "--coordinator", coordinator.url, "--token-file", token, "--json"])
        #expect(try JSONDecoder().decode(LoadReport.self, from: json.stdout).window?.tokens == window.tokens)

        // --plot writes a PNG that libpng reads: the heat map's cells are not all white.
        let plot = Scratch.directory + "jindou-load-\(UUID().uuidString).png"
        defer { try? FileManager.default.removeItem(atPath: plot) }
        let drawn = try ctl.run(["load", "--coordinator", coordinator.url, "--token-file", token, "--plot", plot])
        #expect(drawn.status == 0, "\(drawn.stderr)")
        let decoded = try ImageDecoder().decode(contentsOf: plot).image
        #expect(decoded.width > 300 && decoded.height > 100)
        let heat = (0..<(sparseLayers * 8)).map { i in decoded.pixels[3 * ((45 + i / 8) * decoded.width + 75 + (i % 8) * 24)] }
        #expect(heat.contains { $0 < 255 }, "the heat map is empty")
        let refused = try ctl.run(["load", "--coordinator", coordinator.url, "--token-file", token, "--plot", "/nonexistent/dir/x.png"])
        #expect(refused.status != 0 && refused.stderr.contains("/nonexistent/dir/x.png"))
    }

    /// `--record-routing`: the trace holds exactly the routing the window counted (default-K
    /// requests), leaves out tokens of other K, and `jindouctl balance` replays it.
    @Test func recordedTraceMatchesTheWindowAndReplays() async throws {
        let token = try tokenFile()
        let path = Scratch.directory + "jindou-routing-\(UUID().uuidString).trace"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (coordinator, workers, client) = try await cluster(["--load-window", "600", "--record-routing", path], workers: 2, token: token)
        defer { workers.forEach { $0.stop() } }
        for i in 0..<5 {
            let body = GenerationRequestBody(promptIDs: [3 + i, 14, 15, 92], maxNewTokens: 3, ignoreEOS: true)
            _ = try await client.post("v1/jindou/generate", body, as: GenerationReport.self)
        }
        let window = try #require(try await client.get("v1/admin/load", as: LoadReport.self).window)
        // Another K: served, counted in the window, not in the trace.
        let elastic = GenerationRequestBody(promptIDs: [7, 8, 9], maxNewTokens: 2, expertsPerToken: .fixed(4), ignoreEOS: true)
        _ = try await client.post("v1/jindou/generate", elastic, as: GenerationReport.self)
        coordinator.stop()  // SIGTERM: the trace is closed

        let trace = try RoutingTrace.read(path: path)
        #expect(trace.header.experts == 8 && trace.header.layers == sparseLayers && trace.header.topK == expertsPerToken)
        #expect(trace.tokenCount == window.tokens)
        let load = trace.expertLoad()
        for (i, layer) in window.layers.enumerated() { #expect(load[i].map { Int($0) } == layer.experts, "layer \(layer.layer)") }

        let ctl = try Executable("jindouctl")
        let simulated = try ctl.run(["balance", "simulate", "--trace", path, "--workers", "2,4", "--window-steps", "4", "--json"])
        #expect(simulated.status == 0, "\(simulated.stderr)")
        let planned = try ctl.run(["balance", "plan", "--trace", path, "--workers", "w0,w1", "--extra-slots", "0.25",
                                   "--model-layers", "0,2,3", "--out", path + ".placement.json"])
        #expect(planned.status == 0, "\(planned.stderr)")
        defer { try? FileManager.default.removeItem(atPath: path + ".placement.json") }
        // The plan is a valid placement for the model the trace came from.
        let description = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path(fixture)))
        let placement = try PlacementFile.load(path: path + ".placement.json", description: description)
        try placement.validate(for: description)
    }

    /// (d) Under a skewed workload (one prompt repeated with one expert per token, so every
    /// request routes its tokens to the same few experts), `rebalance` lowers the measured
    /// max/mean worker load, no request fails and outputs stay exact — moving experts only,
    /// and with EPLB replication of the hot experts into 50 % extra slots.
    @Test(arguments: [nil, 0.5] as [Double?])
    func rebalanceLowersMeasuredImbalance(extraSlots: Double?) async throws {
        let token = try tokenFile()
        let window = 2
        let (coordinator, workers, client) = try await cluster(["--load-window", "\(window)"], workers: 3, token: token)
        defer { workers.forEach { $0.stop() }; coordinator.stop() }
        let skewed = GenerationRequestBody(promptIDs: [3, 14, 15, 92], maxNewTokens: 4, expertsPerToken: .fixed(1),
                                           ignoreEOS: true, emitLogits: true)
        let stream = RequestStream()
        stream.start(client: client, expected: try await RequestStream.expectations(fixture: fixture, bodies: [skewed]))
        try await Task.sleep(for: .seconds(window + 1))
        let before = try await trafficWindow(client, "a window of traffic before the rebalance")

        let change = try await client.post("v1/admin/rebalance", RebalanceRequest(dryRun: false, extraSlots: extraSlots),
                                           as: PlacementChange.self)
        let addedCopies = change.diff.reduce(0) { $0 + $1.addedCount - $1.removedCount }
        if let extraSlots {
            // 8 experts × 1.5 = 12 slots per layer, 4 per worker: the hot experts got the 4 extra copies.
            #expect(addedCopies == Int(8 * extraSlots) * sparseLayers, "\(change.diff)")
        } else {
            #expect(addedCopies == 0)
        }
        try await settled(client, "rebalanced") { $0.placementVersion >= change.toVersion }
        try await Task.sleep(for: .seconds(window + 1))  // a window of traffic on the new placement only
        let after = try await trafficWindow(client, "a window of traffic after the rebalance")
        let result = await stream.finish()

        // Each MoE layer waits for its busiest worker: the per-layer figure is the one to lower.
        let (beforeStep, afterStep) = (try #require(before.stepMaxOverMean), try #require(after.stepMaxOverMean))
        #expect(afterStep < beforeStep,
                "per-layer max/mean \(beforeStep) → \(afterStep), predicted \(change.predictedMaxOverMean ?? 0)")
        #expect(result.failures.isEmpty, "\(result.failures.prefix(5))")
        #expect(result.mismatches.isEmpty, "\(result.mismatches.prefix(5))")
        #expect(result.sent > 10)
    }

    /// (b) With `--balance-bias` on a skewed workload the bias grows, the routing change it
    /// causes stays within `--max-routing-change`, and it survives a coordinator restart.
    @Test func servingBiasIsBoundedGuardedAndPersisted() async throws {
        let token = try tokenFile()
        let state = Scratch.directory + "jindou-state-\(UUID().uuidString)"
        let port = try freePort()
        let limit = 0.1
        let flags = ["--state-dir", state, "--load-window", "2", "--balance-bias", "--bias-gamma", "0.005", "--bias-cap", "0.05",
                     "--max-routing-change", "\(limit)"]
        var (coordinator, workers, client) = try await cluster(flags, workers: 2, token: token, port: port)
        defer { workers.forEach { $0.stop() }; coordinator.stop() }
        let body = GenerationRequestBody(promptIDs: [3, 14, 15, 92], maxNewTokens: 4, ignoreEOS: true)
        var failures = 0
        var biased: ServingBiasReport?
        for _ in 0..<200 {
            do { _ = try await client.post("v1/jindou/generate", body, as: GenerationReport.self) } catch { failures += 1 }
            let bias = try #require(try await client.get("v1/admin/load", as: LoadReport.self).bias)
            #expect(bias.routingChange <= limit)
            #expect(bias.maxAbsBias <= 0.05 + 1e-6)
            if bias.updates >= 4 && bias.maxAbsBias > 0 { biased = bias; break }
        }
        #expect(failures == 0)
        let report = try #require(biased, "the bias never moved")
        #expect(report.layers.count == sparseLayers)
        #expect(report.backoffs > 0 || report.routingChange > 0, "the guard never had anything to measure")

        // Quiet for a window: no more updates move the bias, then a clean restart.
        try await Task.sleep(for: .seconds(3))
        let settledBias = try #require(try await client.get("v1/admin/load", as: LoadReport.self).bias)
        coordinator.stop()
        coordinator = try CoordinatorProcess(fixture: fixture, port: port, arguments: ["--token-file", token] + timing() + flags)
        let restored = try #require(try await client.get("v1/admin/load", as: LoadReport.self).bias)
        #expect(restored.maxAbsBias > 0)
        #expect(restored.layers.map(\.bias) == settledBias.layers.map(\.bias))
    }
}
