import Foundation
import JindouAdmin
import JindouModel
import JindouTestSupport
import JindouTransport
import JindouWire
import Testing

/// Workers without a local checkpoint (`jindoud worker --cache-dir`), with real processes:
/// they fetch exactly their shard's bytes from the coordinator, serve the engine's answers,
/// take new experts on `scale`, resume after being killed mid-fetch, and re-verify (and
/// fetch again) what is in their cache at every start.
@Suite("Workers without a local checkpoint", .serialized)
struct FetchingWorkerTests {
    let timing = ["--heartbeat", "0.1", "--unreachable-after", "2", "--gone-after", "30"]

    func cacheDirectory() -> String { Scratch.directory + "jindou-cache-\(UUID().uuidString)" }

    /// `jindoud worker --cache-dir DIR --join URL` with no `--model`.
    func fetchingWorker(_ name: String, cache: String, coordinator: CoordinatorProcess, token: String,
                        extra: [String] = []) throws -> DaemonProcess {
        try DaemonProcess(["worker", "--cache-dir", cache, "--join", coordinator.url, "--token-file", token,
                           "--listen", "127.0.0.1:0", "--name", name, "--log-level", "error"] + extra)
    }

    func status(_ client: AdminClient) async throws -> ClusterStatus {
        try await client.get("v1/admin/status", as: ClusterStatus.self)
    }

    /// Every expectation through the coordinator equals the single-process engine.
    func expectEngineAnswers(_ client: AdminClient, fixture: String, _ context: String) async throws {
        for expected in try await RequestStream.expectations(fixture: fixture) {
            let report = try await client.post("v1/jindou/generate", expected.body, as: GenerationReport.self)
            #expect(report.tokenIDs == expected.tokens, "\(fixture) \(context)")
            #expect(maxAbsDifference(report.lastLogits ?? [], expected.logits) <= 1e-5, "\(fixture) \(context)")
        }
    }

    /// Bytes of `directory`'s files actually allocated on disk, and their apparent sizes.
    func diskUsage(_ directory: String) throws -> (allocated: Int, apparent: Int) {
        var allocated = 0, apparent = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            var s = stat()
            guard stat(directory + "/" + name, &s) == 0 else { continue }
            allocated += Int(s.st_blocks) * 512
            apparent += Int(s.st_size)
        }
        return (allocated, apparent)
    }

    @Test(arguments: ["qwen3-moe-tiny", "glm4-moe-tiny-legacy", "gguf/minimax-m2-tiny-f32.gguf"])
    func workersFetchTheirShardServeAndTakeMoreOnScale(fixture: String) async throws {
        let token = try ControlPlaneTests().tokenFile()
        let coordinator = try CoordinatorProcess(fixture: fixture, arguments: ["--token-file", token] + timing)
        defer { coordinator.stop() }
        let caches = [cacheDirectory(), cacheDirectory()]
        defer { caches.forEach { try? FileManager.default.removeItem(atPath: $0) } }
        let client = try AdminClient(coordinator.url, token: try ClusterSecret(contentsOfFile: token).token, timeoutSeconds: 60)
        let model = try openWeightSource(Fixtures.path(fixture))
        let description = try model.modelDescription()
        let wholeExperts = UInt64(try model.byteCount(of: description.allExperts.flatMap { description.expertTensors($0) }))
        func fetch(_ name: String) async throws -> FetchStatus {
            try #require(try await status(client).workers.first { $0.name == name }?.fetch, "\(name) reports no fetch")
        }

        // w0 fetches every expert before it joins (`--experts all`), and serves alone.
        var workers = [try fetchingWorker("w0", cache: caches[0], coordinator: coordinator, token: token, extra: ["--experts", "all"])]
        defer { workers.forEach { $0.stop() } }
        try await ControlPlaneTests().waitSettled(client, "w0 serves every expert") { $0.workers.first?.state == "ready" }
        #expect(try await fetch("w0") == FetchStatus(fetchedBytes: wholeExperts, totalBytes: wholeExperts), "\(fixture)")
        try await expectEngineAnswers(client, fixture: fixture, "one worker")

        // w1 joins with nothing; the coordinator gives it a share, which is all it fetches.
        workers.append(try fetchingWorker("w1", cache: caches[1], coordinator: coordinator, token: token))
        try await ControlPlaneTests().waitSettled(client, "both serve") {
            $0.workers.filter { $0.state == "ready" && $0.experts > 0 }.count == 2
                // (progress arrives with heartbeats, a moment after the shard status)
                && $0.workers.allSatisfy { w in w.fetch.map { $0.fetchedBytes == $0.totalBytes && $0.totalBytes >= w.expertBytes } == true }
        }
        let w1 = try #require(try await status(client).workers.first { $0.name == "w1" })
        #expect(w1.fetch?.totalBytes == w1.expertBytes && w1.expertBytes > 0 && w1.expertBytes < wholeExperts, "\(fixture): \(w1)")
        try await expectEngineAnswers(client, fixture: fixture, "two workers")
        for cache in caches {
            let mirror = try #require(try FileManager.default.contentsOfDirectory(atPath: cache).first)
            let usage = try diskUsage(cache + "/" + mirror)
            // Sparse: the files have the model's sizes, the disk holds the headers and the shard.
            #expect(usage.allocated < usage.apparent, "\(fixture) \(cache): \(usage)")
        }

        // Live scale to two replicas: each worker fetches the experts it was missing.
        _ = try await client.send("POST", "v1/admin/scale", body: try JSONEncoder().encode(ScaleRequest(replicas: 2)))
        try await ControlPlaneTests().waitSettled(client, "every expert on both workers") { s in
            s.workers.count == 2 && s.workers.allSatisfy { w in
                w.experts == s.totalExperts && w.fetch.map { $0.fetchedBytes == $0.totalBytes && $0.totalBytes >= w.expertBytes } == true
            }
        }
        // Both hold every expert; w0 fetched nothing again (what it gave up stayed in its cache).
        for worker in try await status(client).workers {
            #expect(worker.expertBytes == wholeExperts && worker.fetch?.totalBytes == wholeExperts, "\(fixture) \(worker)")
        }
        try await expectEngineAnswers(client, fixture: fixture, "two replicas")
    }

    /// A worker with a local copy is a source too: one without a copy fetches its shard from
    /// the peer's HTTP port (`--fetch-from`) while the coordinator serves no files at all.
    @Test func aWorkerFetchesItsShardFromAPeerWorker() async throws {
        let fixture = "qwen3-moe-tiny"
        let token = try ControlPlaneTests().tokenFile()
        let coordinator = try CoordinatorProcess(fixture: fixture, arguments: ["--token-file", token, "--serve-model-files", "no"] + timing)
        defer { coordinator.stop() }
        let client = try AdminClient(coordinator.url, token: try ClusterSecret(contentsOfFile: token).token, timeoutSeconds: 60)
        let peerPort = try freePort()
        let peer = try WorkerProcess(fixture: fixture, experts: nil, name: "peer", extraArguments: [
            "--join", coordinator.url, "--token-file", token, "--http", "127.0.0.1:\(peerPort)"])
        defer { peer.stop() }
        let peerHTTP = try AdminClient("http://127.0.0.1:\(peerPort)", timeoutSeconds: 10)
        try await eventually(.seconds(30), "the peer's HTTP port") { (try? await peerHTTP.send("GET", "health", body: nil)) != nil }
        let cache = cacheDirectory()
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let fetcher = try fetchingWorker("fetcher", cache: cache, coordinator: coordinator, token: token,
                                         extra: ["--fetch-from", "http://127.0.0.1:\(peerPort)"])
        defer { fetcher.stop() }
        try await ControlPlaneTests().waitSettled(client, "both serve") {
            $0.workers.filter { $0.state == "ready" && $0.experts > 0 }.count == 2
                && $0.workers.allSatisfy { w in w.name == "peer" || w.fetch.map { $0.fetchedBytes == $0.totalBytes && $0.totalBytes > 0 } == true }
        }
        try await expectEngineAnswers(client, fixture: fixture, "a shard fetched from a peer")
        // The coordinator itself refuses to serve the files.
        do {
            _ = try await client.send("GET", "v1/node/manifest", body: nil)
            Issue.record("the coordinator served its manifest despite --serve-model-files no")
        } catch AdminClientError.status(let code, _) {
            #expect(code == 404)
        }
    }

    @Test func aWorkerKilledMidFetchResumesAndACorruptCacheIsFetchedAgain() async throws {
        let fixture = "qwen3-moe-tiny"
        let token = try ControlPlaneTests().tokenFile()
        let coordinator = try CoordinatorProcess(fixture: fixture, arguments: ["--token-file", token] + timing)
        defer { coordinator.stop() }
        let cache = cacheDirectory()
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let client = try AdminClient(coordinator.url, token: try ClusterSecret(contentsOfFile: token).token, timeoutSeconds: 60)

        // Slowly (the tiny model's experts are ~0.6 MB): killed once part of it is fetched.
        var worker = try fetchingWorker("w0", cache: cache, coordinator: coordinator, token: token, extra: ["--fetch-rate", "100KB"])
        try await eventually(.seconds(30), "the fetch under way") {
            guard let fetch = try await status(client).workers.first?.fetch else { return false }
            return fetch.fetchedBytes > 0 && fetch.fetchedBytes * 2 < fetch.totalBytes
        }
        worker.kill(SIGKILL)
        let total = try #require(try await status(client).workers.first?.fetch?.totalBytes)

        // Restarted on the same cache: what was fetched is re-verified, not fetched again.
        worker = try fetchingWorker("w0", cache: cache, coordinator: coordinator, token: token)
        defer { worker.stop() }
        try await ControlPlaneTests().waitSettled(client, "the restarted worker serves every expert") {
            $0.workers.first?.state == "ready" && $0.workers.first?.fetch.map { $0.totalBytes > 0 && $0.fetchedBytes == $0.totalBytes } == true
        }
        let resumed = try #require(try await status(client).workers.first?.fetch)
        #expect(resumed.verifiedAtStartBytes > 0 && resumed.corruptAtStartBytes == 0, "\(resumed)")
        #expect(resumed.totalBytes < total, "the restart fetched everything again: \(resumed) of \(total)")
        try await expectEngineAnswers(client, fixture: fixture, "after resuming")

        // A byte of a fetched expert changed on disk: found at the next start and fetched again.
        worker.stop()
        try await eventually(.seconds(30), "the coordinator sees the worker gone") { try await status(client).workers.first?.state != "ready" }
        let mirror = cache + "/" + (try #require(try FileManager.default.contentsOfDirectory(atPath: cache).first))
        let journal = try String(contentsOfFile: mirror + "/.fetched", encoding: .utf8)
        let entry = try #require(journal.split(separator: "\n").map { $0.split(separator: "\t") }
            .first { $0[0] == "model.safetensors" && Int($0[1])! > 4096 })
        let handle = try #require(FileHandle(forUpdatingAtPath: mirror + "/model.safetensors"))
        try handle.seek(toOffset: UInt64(entry[1])!)
        let original = try #require(try handle.read(upToCount: 1))
        try handle.seek(toOffset: UInt64(entry[1])!)
        try handle.write(contentsOf: Data([original[0] ^ 0x5A]))
        try handle.close()
        worker = try fetchingWorker("w0", cache: cache, coordinator: coordinator, token: token)
        try await ControlPlaneTests().waitSettled(client, "the worker serves again after its cache was damaged") {
            $0.workers.first?.state == "ready" && $0.workers.first?.fetch.map { $0.totalBytes > 0 && $0.fetchedBytes == $0.totalBytes } == true
        }
        let repaired = try #require(try await status(client).workers.first?.fetch)
        #expect(repaired.corruptAtStartBytes == UInt64(entry[2])! && repaired.totalBytes == UInt64(entry[2])!, "\(repaired), damaged \(entry)")
        try await expectEngineAnswers(client, fixture: fixture, "after the repair")
    }

    @Test func refusalsAreClear() async throws {
        let fixture = "qwen3-moe-tiny"
        let run = ConfigFileTests().run
        // Flags: no source of weights, both, no node to fetch from.
        for (arguments, message) in [
            (["worker", "--listen", "127.0.0.1:0"], "give --model (a local copy of the checkpoint) or --cache-dir"),
            (["worker", "--model", Fixtures.path(fixture), "--cache-dir", "/tmp/x"], "not both"),
            (["worker", "--cache-dir", "/tmp/x"], "--cache-dir needs --join"),
        ] {
            let (status, _, err) = try run(arguments, [:])
            #expect(status == 64 && err.contains(message), "\(arguments): \(err)")
        }
        // A coordinator without a secret does not serve its files by default; with a secret, a
        // worker with the wrong one is refused.
        let open = try CoordinatorProcess(fixture: fixture, arguments: timing)
        defer { open.stop() }
        var (status, _, err) = try run(["worker", "--cache-dir", cacheDirectory(), "--join", open.url, "--listen", "127.0.0.1:0"], [:])
        #expect(status != 0 && err.contains("refused the model manifest (404)") && err.contains("--serve-model-files yes"), "\(err)")
        let token = try ControlPlaneTests().tokenFile()
        let guarded = try CoordinatorProcess(fixture: fixture, arguments: ["--token-file", token] + timing)
        defer { guarded.stop() }
        let wrong = try ControlPlaneTests().tokenFile()
        (status, _, err) = try run(["worker", "--cache-dir", cacheDirectory(), "--join", guarded.url, "--token-file", wrong,
                                    "--listen", "127.0.0.1:0"], [:])
        #expect(status != 0 && err.contains("refused the model manifest (401)"), "\(err)")
    }
}
