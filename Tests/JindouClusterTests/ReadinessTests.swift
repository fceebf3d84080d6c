import Foundation
import JindouAdmin
import JindouModel
import JindouTestSupport
import JindouWire
import Testing

/// `/health` is liveness, `/ready` is readiness, requests that arrive before the first
/// placement is served wait for it instead of failing, and oversized bodies get 413 —
/// with real processes.
@Suite("Readiness and request limits", .serialized)
struct ReadinessTests {
    let fixture = "qwen3-moe-tiny"
    let timing = ["--heartbeat", "0.1", "--unreachable-after", "0.6", "--gone-after", "3"]

    /// GET `path`; (status, body as JSON object) whatever the status.
    func get(_ client: AdminClient, _ path: String) async throws -> (Int, [String: Any]) {
        do {
            let data = try await client.send("GET", path, body: nil)
            return (200, try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:])
        } catch AdminClientError.status(let code, let message) {
            return (code, (try? JSONSerialization.jsonObject(with: Data(message.utf8))) as? [String: Any] ?? ["message": message])
        }
    }

    @Test func healthIsLivenessAndReadyWaitsForEveryExpert() async throws {
        let coordinator = try CoordinatorProcess(fixture: fixture, arguments: timing)
        defer { coordinator.stop() }
        let client = try AdminClient(coordinator.url, timeoutSeconds: 90)

        // No worker yet: alive, not ready, and /ready says what is missing.
        let (healthStatus, health) = try await get(client, "health")
        #expect(healthStatus == 200 && health["ready"] as? Bool == false)
        let (readyStatus, ready) = try await get(client, "ready")
        #expect(readyStatus == 503)
        let total = try #require(ready["total_experts"] as? Int)
        #expect(total > 0 && ready["served_experts"] as? Int == 0)
        #expect((ready["reason"] as? String)?.contains("no worker has joined") == true, "\(ready)")
        #expect((ready["unserved"] as? [String])?.first == "layer 0 expert 0")

        // A request sent now waits for the first placement instead of failing.
        let expected = try await RequestStream.expectations(fixture: fixture)[0]
        let early = Task { try await client.post("v1/jindou/generate", expected.body, as: GenerationReport.self) }
        try await Task.sleep(for: .milliseconds(300))
        let workers = try ["w0", "w1"].map {
            try WorkerProcess(fixture: fixture, experts: nil, name: $0, extraArguments: ["--join", coordinator.url])
        }
        defer { workers.forEach { $0.stop() } }
        let report = try await early.value
        #expect(report.tokenIDs == expected.tokens)
        #expect(maxAbsDifference(report.lastLogits ?? [], expected.logits) <= 1e-5)

        let (afterStatus, after) = try await get(client, "ready")
        #expect(afterStatus == 200 && after["ready"] as? Bool == true && after["served_experts"] as? Int == total)
        #expect(try await get(client, "health").1["ready"] as? Bool == true)
    }

    @Test func requestsGiveUpAfterTheReadyTimeoutNamingWhatIsUnserved() async throws {
        let coordinator = try CoordinatorProcess(fixture: fixture, arguments: timing + ["--ready-timeout", "0.5"])
        defer { coordinator.stop() }
        let client = try AdminClient(coordinator.url, timeoutSeconds: 30)
        let started = ContinuousClock.now
        do {
            _ = try await client.post("v1/jindou/generate", GenerationRequestBody(promptIDs: [1, 2, 3], maxNewTokens: 2),
                                      as: GenerationReport.self)
            Issue.record("a request was served by a cluster with no workers")
        } catch AdminClientError.status(let code, let message) {
            #expect(code == 503)
            #expect(message.contains("not ready") && message.contains("layer 0 expert 0"), "\(message)")
        }
        #expect(ContinuousClock.now - started >= .milliseconds(500))
        // The OpenAI endpoints answer the same way, in OpenAI's error shape.
        do {
            _ = try await client.send("POST", "v1/completions", body: Data(#"{"model": "qwen3-moe-tiny", "prompt": [1, 2], "max_tokens": 2}"#.utf8))
            Issue.record("a completion was served by a cluster with no workers")
        } catch AdminClientError.status(let code, let message) {
            #expect(code == 503 && message.contains("not ready"), "\(message)")
        }
    }

    @Test func waitReadyPrintsTheReadyLineOnlyOnceEveryExpertIsServed() async throws {
        let port = try freePort()
        let jindoud = try Executable("jindoud")
        let process = Process()
        process.executableURL = jindoud.url
        process.arguments = ["coordinator", "--model", Fixtures.path(fixture), "--listen", "127.0.0.1:\(port)", "--log-level", "error",
                             "--wait-ready"] + timing
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        defer { if process.isRunning { process.terminate(); process.waitUntilExit() } }
        let line = Task.detached { readLine(stdout.fileHandleForReading) }
        let client = try AdminClient("http://127.0.0.1:\(port)", timeoutSeconds: 30)
        // HTTP is up (the worker joins through it) before the line is printed.
        try await eventually(.seconds(60), "HTTP up") { try await get(client, "health").0 == 200 }
        #expect(try await get(client, "ready").0 == 503)
        let worker = try WorkerProcess(fixture: fixture, experts: nil, name: "w0", extraArguments: ["--join", "http://127.0.0.1:\(port)"])
        defer { worker.stop() }
        let printed = await line.value
        #expect(printed == "ready http://127.0.0.1:\(port)")
        #expect(try await get(client, "ready").0 == 200)
    }

    @Test func oversizedBodiesGet413AndTheServerKeepsServing() async throws {
        let cluster = try LocalCluster(fixture: fixture, workers: 1, extraArguments: ["--max-request-bytes", "4KiB"])
        defer { cluster.stop() }
        let padding = String(repeating: "x", count: 8 << 10)
        for path in ["v1/chat/completions", "v1/completions", "v1/jindou/generate"] {
            let body = #"{"model": "qwen3-moe-tiny", "prompt": "\#(padding)", "messages": [{"role": "user", "content": "\#(padding)"}]}"#
            let (status, error) = try await cluster.post(path, body)
            #expect(status == 413, "\(path): \(status) \(error)")
            let message = error["message"]?.text ?? ""
            #expect(message.contains("--max-request-bytes"), "\(path): \(error)")
        }
        let (status, reply) = try await cluster.post("v1/completions", #"{"model": "qwen3-moe-tiny", "prompt": [1, 2, 3], "max_tokens": 2}"#)
        #expect(status == 200, "\(reply)")
    }

    /// A worker's HTTP port: /health is liveness, /ready waits for its join and its shard,
    /// /metrics needs the secret and counts what it computed.
    @Test func workerHTTPPortReportsLivenessReadinessAndMetrics() async throws {
        let token = ClusterSecret.generate()
        let tokenFile = Scratch.directory + "jindou-token-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: tokenFile, contents: Data(token.utf8), attributes: [.posixPermissions: 0o600])
        defer { try? FileManager.default.removeItem(atPath: tokenFile) }

        // Joining a coordinator that is not there: alive, not ready, and /ready says why.
        let lonelyPort = try freePort()
        let lonely = try WorkerProcess(fixture: fixture, experts: nil, name: "lonely", extraArguments: [
            "--join", "http://127.0.0.1:\(try freePort())", "--token-file", tokenFile, "--http", "127.0.0.1:\(lonelyPort)"])
        defer { lonely.stop() }
        let lonelyClient = try AdminClient("http://127.0.0.1:\(lonelyPort)", timeoutSeconds: 10)
        try await eventually(.seconds(30), "lonely worker's HTTP port") { (try? await get(lonelyClient, "health").0) == 200 }
        let (lonelyStatus, lonelyReady) = try await get(lonelyClient, "ready")
        #expect(lonelyStatus == 503 && lonelyReady["ready"] as? Bool == false, "\(lonelyReady)")
        #expect((lonelyReady["reason"] as? String)?.contains("not joined to the coordinator") == true, "\(lonelyReady)")

        // Joined to a real coordinator: ready once the coordinator accepted it; metrics behind the secret.
        let coordinator = try CoordinatorProcess(fixture: fixture, arguments: timing + ["--token-file", tokenFile])
        defer { coordinator.stop() }
        let port = try freePort()
        let worker = try WorkerProcess(fixture: fixture, experts: nil, name: "w0", extraArguments: [
            "--join", coordinator.url, "--token-file", tokenFile, "--http", "127.0.0.1:\(port)"])
        defer { worker.stop() }
        let open = try AdminClient("http://127.0.0.1:\(port)", timeoutSeconds: 10)
        let authenticated = try AdminClient("http://127.0.0.1:\(port)", token: token, timeoutSeconds: 10)
        try await eventually(.seconds(60), "worker ready with its experts") {
            let (status, body) = try await get(open, "ready")
            return status == 200 && (body["experts"] as? Int ?? 0) > 0
        }
        #expect(try await get(open, "health").0 == 200)
        #expect(try await get(open, "metrics").0 == 401)
        let api = try AdminClient(coordinator.url, token: token, timeoutSeconds: 90)
        _ = try await api.send("POST", "v1/completions", body: Data(#"{"model": "qwen3-moe-tiny", "prompt": [1, 2, 3], "max_tokens": 3}"#.utf8))
        let metrics = String(decoding: try await authenticated.send("GET", "metrics", body: nil), as: UTF8.self)
        func value(_ name: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
        }
        #expect((value("jindou_node_dispatches_total") ?? 0) > 0, "\(metrics)")
        #expect((value("jindou_node_experts") ?? 0) > 0 && (value("jindou_node_expert_bytes") ?? 0) > 0, "\(metrics)")
        #expect(value("jindou_node_shard_loads_in_progress") == 0, "\(metrics)")
    }
}
