import Foundation
import JindouCoordinator
import JindouModel
import JindouTestSupport
import Testing

/// Network namespaces need root and iproute2. CI sets JINDOU_REQUIRE_NETNS=1 so the suite
/// cannot be skipped there; elsewhere it runs when it can.
let netnsAvailable: Bool = {
    if ProcessInfo.processInfo.environment["JINDOU_REQUIRE_NETNS"] == "1" { return true }
    let hasIP = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    return geteuid() == 0 && hasIP
}()

/// The cluster across "hosts": each worker in its own network namespace, joined to the
/// root namespace (the coordinator) by a veth pair — real routing, real interfaces.
@Suite("Cluster across network namespaces", .serialized, .enabled(if: netnsAvailable, "needs root and iproute2"))
struct NetnsClusterTests {
    let script = Fixtures.repositoryRoot + "/cluster/netns/cluster.sh"
    let prefix = "jdt\(getpid() % 100_000)"

    func sh(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: script)
        process.arguments = arguments + ["--prefix", prefix]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw HarnessError("cluster.sh \(arguments) failed") }
    }

    /// Every layout of the loopback suite, with worker I on host I.
    @Test(arguments: ClusterEqualsEngineTests.arguments)
    func layoutsAcrossHostsEqualTheSingleProcessEngine(fixture: String, layout: Layout) async throws {
        let (specs, placement) = try layout.plan(fixture: fixture)
        try? sh(["down"])
        try sh(["up", String(specs.count), "--delay", "1ms"])
        defer { try? sh(["down"]) }
        let workers = try specs.enumerated().map { i, spec in
            try WorkerProcess(fixture: fixture, experts: spec, name: "w\(i)", host: "10.77.\(i).2",
                              launcher: [script, "exec", String(i), "--prefix", prefix])
        }
        defer { workers.forEach { $0.stop() } }
        #expect(workers.map(\.endpoint.host) == specs.indices.map { "10.77.\($0).2" })
        let coordinator = try await Coordinator.start(
            .init(modelDirectory: Fixtures.path(fixture), workers: workers.map(\.endpoint), placement: placement, prefault: false),
            logger: testLogger)
        let single = try await EngineCache.shared.engine(fixture)
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()
        for c in golden.cases {
            let images = try c.multimodal(tensors, engine: coordinator.engine)
            let expected = try await single.promptLogits(c.promptIDs, expertsPerToken: c.experts,
                                                         multimodal: try c.multimodal(tensors, engine: single))
            let actual = try await coordinator.engine.promptLogits(c.promptIDs, expertsPerToken: c.experts, multimodal: images)
            // Linear attention amplifies the workers' other expert sum order (ClusterEqualsEngineTests).
            let bound: Float = single.description.hasRecurrentState ? 1e-4 : 1e-5
            for (a, e) in zip(actual, expected) { #expect(maxAbsDifference(a, e) <= bound, "\(fixture) \(layout) case \(c.name)") }
            var request = GenerationRequest(promptTokenIDs: c.promptIDs, maxNewTokens: c.maxNewTokens, expertsPerToken: c.experts,
                                            stopTokenIDs: [])
            request.multimodal = images
            let tokens = try await coordinator.engine.generate(request).tokenIDs
            #expect(tokens == c.greedyNewTokens, "\(fixture) \(layout) case \(c.name)")
        }
        await coordinator.pool.closeAll()
    }
}
