import Foundation
import JindouAdmin
import JindouModel
import JindouRouting
import JindouTestSupport
import JindouWire
import Synchronization
import Testing

/// A stream of generation requests against a coordinator, each checked against the
/// single-process engine's answer.
final class RequestStream: Sendable {
    struct Expected: Sendable {
        let body: GenerationRequestBody
        let tokens: [Int]
        let logits: [Float]
    }

    private let state = Mutex((sent: 0, failures: [String](), mismatches: [String]()))
    private let stop = Atomic<Bool>(false)
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)

    static func expectations(fixture: String) async throws -> [Expected] {
        let bodies = ([nil, .fixed(1), .fixed(4), .auto(threshold: 0.6)] as [ExpertsPerToken?]).enumerated().map { i, experts in
            GenerationRequestBody(promptIDs: [3 + i, 14, 15, 92 + i], maxNewTokens: 4, expertsPerToken: experts,
                                  ignoreEOS: true, emitLogits: true)
        }
        return try await expectations(fixture: fixture, bodies: bodies)
    }

    /// The single-process engine's answers to `bodies`.
    static func expectations(fixture: String, bodies: [GenerationRequestBody]) async throws -> [Expected] {
        let engine = try await EngineCache.shared.engine(fixture)
        var result: [Expected] = []
        for body in bodies {
            let run = try await engine.generate(body.request)
            result.append(Expected(body: body, tokens: run.tokenIDs, logits: run.lastPromptLogits!))
        }
        return result
    }

    func start(client: AdminClient, expected: [Expected]) {
        let task = Task {
            var i = 0
            while !stop.load(ordering: .relaxed) {
                let e = expected[i % expected.count]
                i += 1
                do {
                    let report = try await client.post("v1/jindou/generate", e.body, as: GenerationReport.self)
                    let difference = maxAbsDifference(report.lastLogits ?? [], e.logits)
                    if report.tokenIDs != e.tokens || difference > 1e-5 {
                        state.withLock { $0.mismatches.append("request \(i): tokens \(report.tokenIDs) vs \(e.tokens), Δ \(difference)") }
                    }
                } catch {
                    state.withLock { $0.failures.append("request \(i): \(error)") }
                }
                state.withLock { $0.sent += 1 }
            }
        }
        self.task.withLock { $0 = task }
    }

    func finish() async -> (sent: Int, failures: [String], mismatches: [String]) {
        stop.store(true, ordering: .relaxed)
        await task.withLock { $0 }?.value
        return state.withLock { $0 }
    }

    var sent: Int { state.withLock { $0.sent } }
}

/// The control plane with real processes: workers join, the placement changes live, the
/// state survives a coordinator restart, and strangers are refused.
@Suite("Control plane", .serialized)
struct ControlPlaneTests {
    let fixture = "qwen3-moe-tiny"

    func tokenFile(_ token: String = ClusterSecret.generate()) throws -> String {
        let path = Scratch.directory + "jindou-token-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(token.utf8), attributes: [.posixPermissions: 0o600])
        return path
    }

    func timing() -> [String] { ["--heartbeat", "0.1", "--unreachable-after", "0.6", "--gone-after", "3"] }

    func joinWorker(_ name: String, _ coordinator: CoordinatorProcess, token: String) throws -> WorkerProcess {
        try WorkerProcess(fixture: fixture, experts: nil, name: name, extraArguments: ["--join", coordinator.url, "--token-file", token])
    }

    func waitSettled(_ client: AdminClient, _ what: String, _ extra: @escaping (ClusterStatus) -> Bool = { _ in true }) async throws {
        try await eventually(.seconds(60), what) {
            let s = try await client.get("v1/admin/status", as: ClusterStatus.self)
            return s.settled && s.servedExperts == s.totalExperts && extra(s)
        }
    }

    @Test func liveChangesFailNoRequestAndKeepOutputsExact() async throws {
        let token = try tokenFile()
        let state = Scratch.directory + "jindou-state-\(UUID().uuidString)"
        let coordinator = try CoordinatorProcess(fixture: fixture, arguments: ["--state-dir", state, "--token-file", token] + timing())
        defer { coordinator.stop() }
        var workers = [try joinWorker("w0", coordinator, token: token), try joinWorker("w1", coordinator, token: token)]
        defer { workers.forEach { $0.stop() } }
        let client = try AdminClient(coordinator.url, token: try ClusterSecret(contentsOfFile: token).token, timeoutSeconds: 30)
        try await waitSettled(client, "two workers serve every expert") { $0.workers.filter { $0.state == "ready" }.count == 2 }

        let stream = RequestStream()
        stream.start(client: client, expected: try await RequestStream.expectations(fixture: fixture))
        try await eventually(.seconds(60), "requests flowing") { stream.sent >= 5 }

        // (a) A worker joins and is picked up; then every expert gets two copies.
        workers.append(try joinWorker("w2", coordinator, token: token))
        try await waitSettled(client, "w2 picked up") { $0.workers.first { $0.name == "w2" }.map { $0.experts > 0 } ?? false }
        let scaled = try await client.post("v1/admin/scale", ScaleRequest(replicas: 2), as: PlacementChange.self)
        #expect(scaled.applied)
        try await waitSettled(client, "two copies of every expert") { $0.placementVersion >= scaled.toVersion }
        let shards = try await client.get("v1/admin/shards", as: ShardsReport.self)
        #expect(shards.layers.allSatisfy { $0.experts.values.allSatisfy { $0.count == 2 } })

        // (b) Drain w0: its experts move; it can then be stopped.
        _ = try await client.post("v1/admin/drain", DrainRequest(worker: "w0"), as: PlacementChange.self)
        try await waitSettled(client, "w0 drained") { $0.workers.first { $0.name == "w0" }?.state == "drained" }
        workers[0].stop()
        // ...and once started again (the maintenance cycle) it is back in service.
        workers[0] = try joinWorker("w0", coordinator, token: token)
        try await waitSettled(client, "restarted w0 back in service") {
            $0.workers.first { $0.name == "w0" }.map { $0.state == "ready" && $0.experts > 0 } ?? false
        }

        // (c) Rebalance from measured load.
        let dryRun = try await client.post("v1/admin/rebalance", RebalanceRequest(dryRun: true), as: PlacementChange.self)
        #expect(!dryRun.applied && dryRun.predictedMaxOverMean != nil)
        let rebalanced = try await client.post("v1/admin/rebalance", RebalanceRequest(dryRun: false), as: PlacementChange.self)
        try await waitSettled(client, "rebalanced") { $0.placementVersion >= rebalanced.toVersion }

        // (d) Kill a worker whose experts are all replicated.
        let verify = try await client.get("v1/admin/verify", as: VerifyReport.self)
        #expect(verify.ok, "\(verify.checks)")
        try await eventually(.seconds(60), "more requests") { stream.sent >= 40 }
        workers[2].kill()
        let sentAtKill = stream.sent
        try await eventually(.seconds(60), "requests after the kill") { stream.sent >= sentAtKill + 20 }

        let result = await stream.finish()
        #expect(result.failures.isEmpty, "\(result.failures.prefix(5))")
        #expect(result.mismatches.isEmpty, "\(result.mismatches.prefix(5))")
        #expect(result.sent > 60)
        let status = try await client.get("v1/admin/status", as: ClusterStatus.self)
        #expect(status.workers.first { $0.name == "w2" }?.state == "unreachable" || status.workers.first { $0.name == "w2" }?.state == "gone")
    }

    @Test func restartedCoordinatorRestoresMembersAndPlacement() async throws {
        let token = try tokenFile()
        let state = Scratch.directory + "jindou-state-\(UUID().uuidString)"
        let port = try freePort()
        var coordinator = try CoordinatorProcess(fixture: fixture, port: port,
                                                 arguments: ["--state-dir", state, "--token-file", token, "--replicas", "2"] + timing())
        let workers = [try joinWorker("a", coordinator, token: token), try joinWorker("b", coordinator, token: token)]
        defer { workers.forEach { $0.stop() }; coordinator.stop() }
        let client = try AdminClient(coordinator.url, token: try ClusterSecret(contentsOfFile: token).token, timeoutSeconds: 30)
        try await waitSettled(client, "cluster up") { $0.workers.filter { $0.state == "ready" }.count == 2 }
        let before = try await client.get("v1/admin/status", as: ClusterStatus.self)
        let shardsBefore = try await client.get("v1/admin/shards", as: ShardsReport.self)

        coordinator.kill()  // a crash, not a clean shutdown
        coordinator = try CoordinatorProcess(fixture: fixture, port: port, arguments: ["--state-dir", state, "--token-file", token] + timing())
        try await waitSettled(client, "cluster restored") { $0.workers.filter { $0.state == "ready" }.count == 2 }
        let after = try await client.get("v1/admin/status", as: ClusterStatus.self)
        #expect(after.placementVersion == before.placementVersion)
        #expect(after.replicas == 2)
        #expect(after.workers.map(\.name) == before.workers.map(\.name))
        #expect(after.workers.map(\.address) == before.workers.map(\.address))
        #expect(try await client.get("v1/admin/shards", as: ShardsReport.self) == shardsBefore)
        let expected = try await RequestStream.expectations(fixture: fixture)[0]
        let report = try await client.post("v1/jindou/generate", expected.body, as: GenerationReport.self)
        #expect(report.tokenIDs == expected.tokens)

        // jindouctl shows the same cluster, as a table and as stable JSON.
        let ctl = try Executable("jindouctl")
        let json = try ctl.run(["status", "--coordinator", coordinator.url, "--token-file", token, "--json"])
        #expect(json.status == 0, "\(json.stderr)")
        let printed = try JSONDecoder().decode(ClusterStatus.self, from: json.stdout)
        #expect(printed.workers.map(\.name) == before.workers.map(\.name) && printed.placementVersion == before.placementVersion)
        let text = try ctl.run(["status", "--coordinator", coordinator.url, "--token-file", token])
        let lines = String(decoding: text.stdout, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 4 && lines[1].hasPrefix("WORKER") && lines[2].hasPrefix("a ") && lines[3].hasPrefix("b "))
    }

    @Test func restartedWorkerRejoinsAndGetsItsShardBack() async throws {
        let token = try tokenFile()
        let coordinator = try CoordinatorProcess(fixture: fixture, arguments: ["--token-file", token] + timing())
        defer { coordinator.stop() }
        var workers = [try joinWorker("a", coordinator, token: token), try joinWorker("b", coordinator, token: token)]
        defer { workers.forEach { $0.stop() } }
        let client = try AdminClient(coordinator.url, token: try ClusterSecret(contentsOfFile: token).token, timeoutSeconds: 30)
        try await waitSettled(client, "cluster up") { $0.workers.filter { $0.state == "ready" }.count == 2 }
        let shards = try await client.get("v1/admin/shards", as: ShardsReport.self)

        workers[1].kill()
        try await eventually(.seconds(60), "b unreachable") {
            try await client.get("v1/admin/status", as: ClusterStatus.self).workers.first { $0.name == "b" }?.state == "unreachable"
        }
        // Same name, new process and port: it rejoins and is given the same experts again.
        workers[1] = try joinWorker("b", coordinator, token: token)
        try await waitSettled(client, "b back") { $0.workers.allSatisfy { $0.state == "ready" } }
        #expect(try await client.get("v1/admin/shards", as: ShardsReport.self) == shards)
        let status = try await client.get("v1/admin/status", as: ClusterStatus.self)
        #expect(status.workers.first { $0.name == "b" }?.address == workers[1].endpoint.description)
        let expected = try await RequestStream.expectations(fixture: fixture)[1]
        #expect(try await client.post("v1/jindou/generate", expected.body, as: GenerationReport.self).tokenIDs == expected.tokens)
    }

    /// A replica that is killed and started again is reachable before its shard is reloaded;
    /// it must take no tokens until then (the soak found requests failing with
    /// EXPERT_NOT_HOSTED in that window), while its copy elsewhere serves them.
    @Test func aRestartedReplicaTakesNoTokensBeforeItsShardIsBack() async throws {
        let token = try tokenFile()
        let coordinator = try CoordinatorProcess(fixture: fixture, arguments: ["--token-file", token] + timing())
        defer { coordinator.stop() }
        var workers = [try joinWorker("a", coordinator, token: token), try joinWorker("b", coordinator, token: token)]
        defer { workers.forEach { $0.stop() } }
        let client = try AdminClient(coordinator.url, token: try ClusterSecret(contentsOfFile: token).token, timeoutSeconds: 30)
        try await waitSettled(client, "cluster up") { $0.workers.filter { $0.state == "ready" }.count == 2 }
        let scaled = try await client.post("v1/admin/scale", ScaleRequest(replicas: 2), as: PlacementChange.self)
        try await waitSettled(client, "two copies of every expert") { $0.placementVersion >= scaled.toVersion }

        let stream = RequestStream()
        stream.start(client: client, expected: try await RequestStream.expectations(fixture: fixture))
        for round in 0..<6 {
            let victim = round % 2
            let name = victim == 0 ? "a" : "b"
            workers[victim].kill()
            workers[victim] = try joinWorker(name, coordinator, token: token)
            try await waitSettled(client, "\(name) back (round \(round))") { $0.workers.allSatisfy { $0.state == "ready" && $0.experts > 0 } }
            let sentBefore = stream.sent
            try await eventually(.seconds(60), "requests after round \(round)") { stream.sent >= sentBefore + 5 }
        }
        let result = await stream.finish()
        #expect(result.failures.isEmpty, "\(result.failures.prefix(5))")
        #expect(result.mismatches.isEmpty, "\(result.mismatches.prefix(5))")
    }

    @Test func strangersAreRefused() async throws {
        let token = try tokenFile()
        let coordinator = try CoordinatorProcess(fixture: fixture, arguments: ["--token-file", token] + timing())
        defer { coordinator.stop() }
        let secret = try ClusterSecret(contentsOfFile: token)

        // The admin API and generation need the secret.
        let anonymous = try AdminClient(coordinator.url, timeoutSeconds: 10)
        for call in [{ _ = try await anonymous.get("v1/admin/status", as: ClusterStatus.self) },
                     { _ = try await anonymous.post("v1/jindou/generate", GenerationRequestBody(promptIDs: [1]), as: GenerationReport.self) },
                     { _ = try await anonymous.post("v1/admin/workers/join", JoinRequest(name: "x", address: "127.0.0.1:1", cores: 1, memoryBytes: 1, fingerprint: ""), as: JoinResponse.self) }] {
            do {
                try await call()
                Issue.record("an unauthenticated request was served")
            } catch AdminClientError.status(let code, _) {
                #expect(code == 401)
            }
        }
        let wrong = try AdminClient(coordinator.url, token: ClusterSecret.generate(), timeoutSeconds: 10)
        await #expect(throws: AdminClientError.self) { try await wrong.get("v1/admin/status", as: ClusterStatus.self) }
        let ctl = try Executable("jindouctl")
        let refused = try ctl.run(["status", "--coordinator", coordinator.url])
        #expect(refused.status != 0 && refused.stderr.contains("401"))

        // A worker with another secret never becomes a member; one with the secret does.
        let stranger = try joinWorker("stranger", coordinator, token: try tokenFile())
        defer { stranger.stop() }
        let member = try joinWorker("member", coordinator, token: token)
        defer { member.stop() }
        let client = try AdminClient(coordinator.url, token: secret.token, timeoutSeconds: 10)
        try await eventually(.seconds(60), "member ready") {
            try await client.get("v1/admin/status", as: ClusterStatus.self).workers.contains { $0.name == "member" && $0.state == "ready" }
        }
        #expect(try await !client.get("v1/admin/status", as: ClusterStatus.self).workers.contains { $0.name == "stranger" })

        // A worker with a secret refuses a coordinator handshake that is not signed with it.
        let connection = try RawConnection(member.endpoint)
        let reply = try connection.handshake(fingerprint: "anything")
        #expect(reply.error?.code == .unauthenticated)
        #expect(connection.receive().isClosed)
        // … and a coordinator with the wrong secret cannot use it (static --workers).
        let other = try tokenFile()
        do {
            let impostor = try CoordinatorProcess(fixture: fixture, arguments: ["--workers", member.endpoint.description, "--token-file", other])
            impostor.stop()
            Issue.record("a coordinator with the wrong secret started against the worker")
        } catch {}
    }
}
