import Foundation
import JindouCoordinator
import JindouModel
import JindouRouting
import JindouTestSupport
import JindouTransport
import JindouWire
import Testing

extension RawConnection.Reply {
    /// The ERROR frame's code and message, if this is one.
    var error: ErrorMessage? {
        if case .frame(let frame) = self, frame.kind == .error { return ErrorMessage(frame: frame) }
        return nil
    }
    var isClosed: Bool { if case .closed = self { return true } else { return false } }
}

/// Faults and bad input: each gets a clear error naming the thing at fault, and no
/// process goes down (DESIGN invariant 5).
@Suite("Cluster faults and bad input", .serialized)
struct FaultTests {
    let fixture = "qwen3-moe-tiny"

    var fingerprint: String {
        get throws { try ModelFingerprint.compute(Checkpoint(directory: Fixtures.path(fixture))) }
    }

    /// A valid dispatch for layer 0 (sparse in qwen3-moe-tiny) using experts `experts`.
    func dispatch(experts: [Int32] = [0, 1], layer: Int = 0, id: UInt64 = 7) -> DispatchMessage {
        var routing = RoutingDecision()
        routing.append(experts: experts, weights: experts.map { _ in 0.5 })
        return DispatchMessage(requestID: id, layer: layer, placementVersion: 1, hiddenSize: 64, dtype: .f32,
                               routing: routing, hidden: (0..<64).map { Float($0) / 64 })
    }

    /// The worker answers a fresh handshake and a valid dispatch correctly.
    func expectHealthy(_ worker: WorkerProcess) throws {
        #expect(worker.isRunning, "worker process died")
        let connection = try RawConnection(worker.endpoint)
        guard case .frame(let welcome) = try connection.handshake(fingerprint: fingerprint), welcome.kind == .welcome else {
            Issue.record("no WELCOME after the abuse")
            return
        }
        try connection.send(dispatch().frame())
        guard case .frame(let reply) = connection.receive() else {
            Issue.record("no COMBINE after the abuse")
            return
        }
        let combine = try CombineMessage(frame: reply)
        let engine = try ExpertShard(description: ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path(fixture))),
                                     checkpoint: Checkpoint(directory: Fixtures.path(fixture)),
                                     keys: [ExpertKey(layer: 0, expert: 0), ExpertKey(layer: 0, expert: 1)])
        let expected = try engine.compute(layer: 0, hidden: dispatch().hidden, tokenCount: 1, routing: dispatch().routing)
        #expect(combine.output == expected)
    }

    @Test func unreachableWorkerAtStartIsNamed() async throws {
        let worker = try WorkerProcess(fixture: fixture, name: "ok")
        defer { worker.stop() }
        let port = try freePort()
        do {
            _ = try await Coordinator.start(
                .init(modelDirectory: Fixtures.path(fixture), workers: [worker.endpoint, Endpoint(host: "127.0.0.1", port: port)],
                      prefault: false), logger: testLogger)
            Issue.record("started without a reachable worker")
        } catch let error as ClusterError {
            guard case .workerUnavailable(let name, _) = error else { Issue.record("got \(error)"); return }
            #expect(name == "127.0.0.1:\(port)")
            #expect(error.description.contains("127.0.0.1:\(port)"))
        }
    }

    @Test func killedWorkerFailsTheRequestAndTheNextOneWorksOnceItIsBack() async throws {
        let port = try freePort()
        let steady = try WorkerProcess(fixture: fixture, experts: "contiguous:0/2", name: "w0")
        var victim = try WorkerProcess(fixture: fixture, experts: "contiguous:1/2", name: "w1", port: port)
        defer { steady.stop(); victim.stop() }
        let coordinator = try await Coordinator.start(
            .init(modelDirectory: Fixtures.path(fixture), workers: [steady.endpoint, victim.endpoint], placement: .contiguous,
                  // Generous: the surviving worker must neither time out nor be declared
                  // unreachable when the test machine is busy (CI once starved this process's
                  // heartbeats long enough to take the surviving worker out and name expert 0);
                  // the victim's death is seen from its closed connection, not from these.
                  timeoutSeconds: 120, prefault: false,
                  control: .init(heartbeat: .milliseconds(100), unreachableAfter: .seconds(60), goneAfter: .seconds(600))),
            logger: testLogger)
        let controlLoop = Task { try await coordinator.controller.run() }
        defer { controlLoop.cancel() }
        let engine = coordinator.engine
        let long = Task {
            try await engine.generate(GenerationRequest(promptTokenIDs: [1, 2, 3], maxNewTokens: 100_000, stopTokenIDs: []))
        }
        try await Task.sleep(for: .milliseconds(300))
        victim.kill()
        do {
            _ = try await long.value
            Issue.record("the request survived its worker's death")
        } catch let error as ClusterError {
            // Its experts have no replica: the failure names the missing (layer, expert).
            guard case .expertUnavailable(_, let expert) = error else { Issue.record("got \(error)"); return }
            #expect(expert >= 4, "expert \(expert) is on the surviving worker")
        }
        // While it is down, requests fail fast, naming an expert it hosted; the coordinator stays up.
        let start = ContinuousClock.now
        do {
            _ = try await engine.generate(GenerationRequest(promptTokenIDs: [4, 5], maxNewTokens: 2))
            Issue.record("a request succeeded without half the experts")
        } catch let error as ClusterError {
            #expect(error.description.contains("is not served"), "\(error)")
        }
        // "Fast": it does not wait for the 120 s request timeout (a bound on behaviour, not speed).
        #expect(ContinuousClock.now - start < .seconds(5), "failing waited for the request timeout")
        // It comes back on the same address: the control loop notices and requests succeed again.
        victim = try WorkerProcess(fixture: fixture, experts: "contiguous:1/2", name: "w1", port: port)
        let single = try await EngineCache.shared.engine(fixture)
        let request = GenerationRequest(promptTokenIDs: [4, 5, 6], maxNewTokens: 6, stopTokenIDs: [])
        let expected = try await single.generate(request).tokenIDs
        var recovered = false
        for _ in 0..<50 where !recovered {
            try await Task.sleep(for: .milliseconds(100))
            if let tokens = try? await engine.generate(request).tokenIDs {
                #expect(tokens == expected)
                recovered = true
            }
        }
        #expect(recovered, "the cluster did not recover after the worker came back")
        await coordinator.pool.closeAll()
    }

    @Test func otherProtocolVersionIsRefusedAtHandshakeWithBothVersions() throws {
        let worker = try WorkerProcess(fixture: fixture, name: "v")
        defer { worker.stop() }
        // A header claiming protocol version 2 (FrameEncoder always writes ours, so by hand).
        var header = HelloMessage(modelFingerprint: try fingerprint, coordinatorName: "future").frame().header
        header.protocolVersion = 2
        header.hello.protocolVersion = 2
        let bytes: [UInt8] = try header.serializedBytes()
        var raw = withUnsafeBytes(of: UInt32(bytes.count).littleEndian, Array.init)
        raw += bytes
        let connection = try RawConnection(worker.endpoint)
        connection.send(raw)
        let reply = connection.receive()
        let error = try #require(reply.error)
        #expect(error.code == .protocolVersionMismatch)
        #expect(error.message.contains("we speak 1") && error.message.contains("peer speaks 2"), "\(error.message)")
        #expect(connection.receive().isClosed)
        try expectHealthy(worker)
    }

    @Test func modelFingerprintMismatchIsRefusedWithBothValues() async throws {
        let worker = try WorkerProcess(fixture: fixture, name: "f")
        defer { worker.stop() }
        let pool = try WorkerPool(fingerprint: "deadbeef", logger: testLogger)
        do {
            _ = try await pool.add(worker.endpoint)
            Issue.record("handshake accepted a wrong fingerprint")
        } catch let error as ClusterError {
            #expect(error.description.contains("deadbeef"))
            #expect(error.description.contains(try fingerprint))
        }
        try expectHealthy(worker)
    }

    @Test func malformedFramesGetErrorsAndTheWorkerStaysUp() throws {
        let worker = try WorkerProcess(fixture: fixture, experts: "0-3", name: "m", extraArguments: ["--max-payload-mb", "1"])
        defer { worker.stop() }
        let fingerprint = try self.fingerprint

        func ready() throws -> RawConnection {
            let connection = try RawConnection(worker.endpoint)
            guard case .frame(let welcome) = try connection.handshake(fingerprint: fingerprint), welcome.kind == .welcome else {
                throw HarnessError("handshake failed")
            }
            return connection
        }

        // Unknown layer (dense layer 1; layer 99 does not exist) and an expert not hosted here.
        var connection = try ready()
        for (message, code, text) in [
            (dispatch(layer: 1), ErrorCode.unknownLayer, "layer 1"),
            (dispatch(layer: 99), .unknownLayer, "layer 99"),
            (dispatch(experts: [2, 5]), .expertNotHosted, "expert 5 of layer 0"),
        ] {
            try connection.send(message.frame())
            let error = try #require(connection.receive().error)
            #expect(error.code == code && error.message.contains(text), "\(error)")
        }
        // Wrong checksum: an error, and the connection stays usable.
        var bytes = Array(try FrameEncoder.encode(dispatch().frame()).readableBytesView)
        bytes[bytes.count - 3] ^= 0xFF
        connection.send(bytes)
        #expect(try #require(connection.receive().error).code == .checksumMismatch)
        try connection.send(Heartbeat.frame(.ping, requestID: 77))
        guard case .frame(let pong) = connection.receive() else { Issue.record("no PONG"); return }
        #expect(pong.kind == .pong && pong.requestID == 77)

        // Structurally bad dispatch (routing disagrees with token count).
        var bad = dispatch().frame()
        bad.header.tokenCount = 5
        try connection.send(bad)
        #expect(try #require(connection.receive().error).code == .malformedFrame)

        // Oversized payload (limit 1 MiB): refused before it is read, then the connection closes.
        var huge = FrameHeader()
        huge.kind = .dispatch
        huge.protocolVersion = WireProtocol.version
        huge.payloadLength = 2 << 20
        let raw: [UInt8] = try huge.serializedBytes()
        connection.send(withUnsafeBytes(of: UInt32(raw.count).littleEndian, Array.init) + raw)
        #expect(try #require(connection.receive().error).code == .payloadTooLarge)
        #expect(connection.receive().isClosed)

        // Garbage header: an error, then close.
        connection = try ready()
        connection.send([8, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(try #require(connection.receive().error).code == .malformedFrame)
        #expect(connection.receive().isClosed)

        // Truncated frame, then the peer vanishes.
        connection = try ready()
        connection.send(Array(bytes.prefix(bytes.count / 2)))
        connection = try ready()

        // Dispatch before the handshake.
        let early = try RawConnection(worker.endpoint)
        try early.send(dispatch().frame())
        #expect(try #require(early.receive().error).code == .malformedFrame)

        try expectHealthy(worker)
    }
}
