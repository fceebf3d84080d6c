import Foundation
import JindouCoordinator
import JindouModel
import JindouRouting
import JindouTestSupport
import JindouTransport
import JindouWire
import NIOCore
import Synchronization
import Testing

/// The same-host transport (issue 24 item 1): rings in shared memory carrying frames in
/// the TCP encoding, negotiated over the authenticated TCP connection. Both ends of the
/// rings in one process for the ring's own rules; real worker processes for the rest.
@Suite("Shared-memory transport", .serialized)
struct SharedMemoryTransportTests {
    let fixture = "qwen3-moe-tiny"

    /// Both ends in this process: frames arrive whole and in order, whatever their size
    /// relative to the ring (empty, small, exactly a ring, several rings).
    @Test func framesOfAnySizeArriveWholeAndInOrder() async throws {
        let coordinator = try SharedMemoryChannel.create(ringBytes: 8192)
        defer { coordinator.unlink() }
        let worker = try SharedMemoryChannel.attach(name: coordinator.name)
        #expect(worker.ringBytes == 8192)
        let received = Mutex<[Frame]>([])
        let (done, finished) = AsyncStream.makeStream(of: Void.self)
        worker.startReceiving(deliver: { event in
            if case .frame(let frame) = event { received.withLock { $0.append(frame) } }
        }, finished: { _ in finished.finish() })
        let sizes = [0, 1, 100, 8192 - 64, 8192, 8193, 3 * 8192 + 17, 200_000]
        var sent: [[UInt8]] = []
        for (index, size) in sizes.enumerated() {
            var frame = Heartbeat.frame(.ping, requestID: UInt64(index))
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }
            frame.payload = ByteBuffer(bytes: bytes)
            sent.append(bytes)
            try await coordinator.send(frame)
        }
        try await eventually(.seconds(10), "every frame received") { received.withLock { $0.count } == sizes.count }
        let frames = received.withLock { $0 }
        #expect(frames.map(\.requestID) == (0..<UInt64(sizes.count)).map { $0 })
        #expect(frames.map { Array($0.payload.readableBytesView) } == sent)
        coordinator.close()
        for await _ in done {}
        #expect(worker.isClosed)
    }

    /// Concurrent senders never interleave their frames' bytes.
    @Test func concurrentSendersKeepFramesWhole() async throws {
        let coordinator = try SharedMemoryChannel.create(ringBytes: 4096)
        defer { coordinator.unlink() }
        let worker = try SharedMemoryChannel.attach(name: coordinator.name)
        let received = Mutex<[Frame]>([])
        let errors = Mutex(0)
        worker.startReceiving(deliver: { event in
            switch event {
            case .frame(let frame): received.withLock { $0.append(frame) }
            case .invalid: errors.withLock { $0 += 1 }
            }
        }, finished: { _ in })
        try await withThrowingTaskGroup(of: Void.self) { group in
            for sender in 0..<4 {
                group.addTask {
                    for index in 0..<25 {
                        var frame = Heartbeat.frame(.ping, requestID: UInt64(sender * 100 + index))
                        frame.payload = ByteBuffer(repeating: UInt8(sender), count: 1000 + 700 * index)
                        try await coordinator.send(frame)
                    }
                }
            }
            try await group.waitForAll()
        }
        try await eventually(.seconds(10), "all 100 frames") { received.withLock { $0.count } == 100 }
        #expect(errors.withLock { $0 } == 0)
        for frame in received.withLock({ $0 }) {
            let sender = Int(frame.requestID / 100)
            #expect(frame.payload.readableBytes == 1000 + 700 * Int(frame.requestID % 100))
            #expect(frame.payload.readableBytesView.allSatisfy { Int($0) == sender })
        }
        // Each sender's own frames stay in its order.
        for sender in 0..<4 {
            let ids = received.withLock { $0 }.map(\.requestID).filter { Int($0 / 100) == sender }
            #expect(ids == ids.sorted())
        }
        coordinator.close()
    }

    /// A corrupt ring is an error, never a crash: impossible indices end the link with a
    /// reason; a bad checksum is reported and the stream goes on; an unreadable header
    /// loses the stream and closes it.
    @Test func corruptRingsAreErrors() async throws {
        // Impossible indices.
        do {
            let coordinator = try SharedMemoryChannel.create(ringBytes: 4096)
            defer { coordinator.unlink() }
            let worker = try SharedMemoryChannel.attach(name: coordinator.name)
            let outcome = Mutex<SharedMemoryError??>(nil)
            worker.corruptReceiveRingForTesting()
            worker.startReceiving(deliver: { _ in }, finished: { error in outcome.withLock { $0 = .some(error as? SharedMemoryError) } })
            try await eventually(.seconds(5), "the receiver stops") { outcome.withLock { $0 } != nil }
            #expect(outcome.withLock { $0 } == .some(.corrupt(name: coordinator.name)))
            #expect(coordinator.isClosed)
            await #expect(throws: SharedMemoryError.self) { try await coordinator.send(Heartbeat.frame(.ping, requestID: 1)) }
        }
        // A frame whose checksum is wrong, then a good one; then garbage.
        do {
            let coordinator = try SharedMemoryChannel.create(ringBytes: 4096)
            defer { coordinator.unlink() }
            let worker = try SharedMemoryChannel.attach(name: coordinator.name)
            let events = Mutex<[InboundFrame]>([])
            let stopped = Atomic(false)
            worker.startReceiving(deliver: { event in events.withLock { $0.append(event) } },
                                  finished: { _ in stopped.store(true, ordering: .relaxed) })
            var bad = Heartbeat.frame(.ping, requestID: 5)
            bad.payload = ByteBuffer(bytes: [1, 2, 3, 4])
            var bytes = try FrameEncoder.encode(bad)
            bytes.setInteger(UInt8(9), at: bytes.writerIndex - 1)  // flip the payload's last byte
            // In one write, so both frames usually arrive in one read: decoding must go on
            // past the bad one without waiting for more bytes.
            var good = try FrameEncoder.encode(Heartbeat.frame(.ping, requestID: 6))
            bytes.writeBuffer(&good)
            try await coordinator.sendRawForTesting(bytes)
            try await eventually(.seconds(5), "two events") { events.withLock { $0.count } == 2 }
            let first = events.withLock { $0[0] }
            guard case .invalid(let error) = first, case .checksumMismatch(let id, _, _) = error.error else {
                Issue.record("expected a checksum error, got \(first)")
                return
            }
            #expect(id == 5 && error.recoverable)
            guard case .frame(let good) = events.withLock({ $0[1] }) else {
                Issue.record("the frame after the bad one did not arrive")
                return
            }
            #expect(good.requestID == 6)
            try await coordinator.sendRawForTesting(ByteBuffer(bytes: [0xff, 0xff, 0xff, 0x7f, 1, 2, 3]))
            try await eventually(.seconds(5), "the receiver stops on a lost stream") { stopped.load(ordering: .relaxed) }
            guard case .invalid(let fatal) = events.withLock({ $0.last! }) else {
                Issue.record("no error for the garbage")
                return
            }
            #expect(!fatal.recoverable)
            #expect(coordinator.isClosed)
        }
    }

    @Test func attachingAnythingButJindouRingsFails() throws {
        #expect(throws: SharedMemoryError.self) { try SharedMemoryChannel.attach(name: "/jindou-does-not-exist-\(UUID().uuidString)") }
        let name = "/jindou-test-\(UUID().uuidString)"
        let fd = shm_open(name, O_CREAT | O_RDWR, 0o600)
        #expect(fd >= 0)
        defer { shm_unlink(name) }
        ftruncate(fd, 4096 * 8)
        close(fd)
        #expect(throws: SharedMemoryError.notJindouRings(name: name)) { try SharedMemoryChannel.attach(name: name) }
    }

    /// The engine's logits and greedy tokens through 1 and 3 workers over shared memory.
    @Test(arguments: [("qwen3-moe-tiny", ["all"], PlacementChoice.fromWorkers),
                      ("qwen3-moe-tiny", ["round-robin:0/3", "round-robin:1/3", "round-robin:2/3"], .roundRobin),
                      ("deepseek-v3-tiny", ["contiguous:0/3", "contiguous:1/3", "contiguous:2/3"], .contiguous)])
    func clusterOverSharedMemoryEqualsTheEngine(fixture: String, specs: [String], placement: PlacementChoice) async throws {
        let workers = try specs.enumerated().map { try WorkerProcess(fixture: fixture, experts: $1, name: "s\($0)") }
        defer { workers.forEach { $0.stop() } }
        let coordinator = try await Coordinator.start(
            .init(modelDirectory: Fixtures.path(fixture), workers: workers.map(\.endpoint), placement: placement, prefault: false,
                  transport: .shm),
            logger: testLogger)
        defer { Task { await coordinator.pool.closeAll() } }
        #expect(Set(await coordinator.pool.transports().values) == ["shm"])
        #expect(await coordinator.controller.status().workers.allSatisfy { $0.transport == "shm" })
        try await expectGoldenCasesMatch(coordinator.engine, fixture: fixture)
    }

    /// auto falls back to TCP for a worker that refuses shared memory; shm then fails
    /// naming why; auto picks shared memory for a worker on loopback that accepts it.
    @Test func transportChoiceAndFallback() async throws {
        let refusing = try WorkerProcess(fixture: fixture, name: "tcp-only", extraArguments: ["--transport", "tcp"])
        defer { refusing.stop() }
        let accepting = try WorkerProcess(fixture: fixture, name: "accepting")
        defer { accepting.stop() }
        let fingerprint = try ModelFingerprint.compute(Checkpoint(directory: Fixtures.path(fixture)))

        let auto = try WorkerPool(fingerprint: fingerprint, transport: .auto, logger: testLogger)
        _ = try await auto.add(refusing.endpoint)
        _ = try await auto.add(accepting.endpoint)
        #expect(await auto.transports() == ["tcp-only": "tcp", "accepting": "shm"])
        #expect(await auto.info("tcp-only")?.transport == "tcp")
        #expect(await auto.info("accepting")?.transport == "shm")
        // Both answer over their links.
        for name in ["tcp-only", "accepting"] { _ = try await auto.ping(name) }
        await auto.closeAll()

        let forced = try WorkerPool(fingerprint: fingerprint, transport: .shm, logger: testLogger)
        await #expect {
            _ = try await forced.add(refusing.endpoint)
        } throws: { error in
            "\(error)".contains("--transport shm") && "\(error)".contains("does not accept shared memory")
        }
        let tcp = try WorkerPool(fingerprint: fingerprint, transport: .tcp, logger: testLogger)
        _ = try await tcp.add(accepting.endpoint)
        #expect(await tcp.transports() == ["accepting": "tcp"])
        await tcp.closeAll()
    }

    /// A worker that dies fails the exchange at once (its TCP connection closes the rings),
    /// not at the link's timeout; the worker's restart is reached again.
    @Test func aDeadWorkerFailsTheExchangeAtOnce() async throws {
        let worker = try WorkerProcess(fixture: fixture, name: "doomed")
        let fingerprint = try ModelFingerprint.compute(Checkpoint(directory: Fixtures.path(fixture)))
        let pool = try WorkerPool(fingerprint: fingerprint, transport: .shm, timeoutSeconds: 600, logger: testLogger)
        _ = try await pool.add(worker.endpoint)
        _ = try await pool.ping("doomed")
        worker.kill()
        let start = ContinuousClock.now
        await #expect(throws: ClusterError.self) { _ = try await pool.ping("doomed") }
        // Far below the 600 s timeout: the failure came from the closed connection.
        #expect(ContinuousClock.now - start < .seconds(60))
        await pool.closeAll()
    }

    /// SHM_ATTACH is a post-handshake message: before HELLO it is refused and the
    /// connection closed; afterwards a name that does not exist or is not one path
    /// component gets an ERROR and the connection keeps working over TCP.
    @Test func attachRequestsAreValidated() throws {
        let worker = try WorkerProcess(fixture: fixture, name: "v")
        defer { worker.stop() }
        let early = try RawConnection(worker.endpoint)
        _ = try early.send(SharedMemoryAttachMessage(name: "/jindou-x", ringBytes: 4096).frame(requestID: 1))
        #expect(early.receive().error?.message.contains("before the HELLO handshake") == true)
        #expect(early.receive().isClosed)

        let connection = try RawConnection(worker.endpoint)
        let fingerprint = try ModelFingerprint.compute(Checkpoint(directory: Fixtures.path(fixture)))
        guard case .frame(let welcome) = try connection.handshake(fingerprint: fingerprint) else {
            Issue.record("no WELCOME")
            return
        }
        let said = try WelcomeMessage(frame: welcome)
        #expect(said.acceptsSharedMemory && said.hostID == HostIdentity.bootID && !said.hostID.isEmpty)
        _ = try connection.send(SharedMemoryAttachMessage(name: "/jindou-missing-\(UUID().uuidString)", ringBytes: 4096).frame(requestID: 2))
        #expect(connection.receive().error?.message.contains("No such file") == true)
        _ = try connection.send(SharedMemoryAttachMessage(name: "/../etc/passwd", ringBytes: 4096).frame(requestID: 3))
        #expect(connection.receive().error?.message.contains("not a single path component") == true)
        _ = try connection.send(Heartbeat.frame(.ping, requestID: 4))
        guard case .frame(let pong) = connection.receive() else {
            Issue.record("the connection did not survive the refused attaches")
            return
        }
        #expect(pong.kind == .pong && pong.requestID == 4)
    }

    /// A coordinator that writes garbage into its rings loses that link, not the worker:
    /// the worker closes the rings and the connection, and serves the next coordinator.
    @Test func garbageInTheRingsClosesOnlyThatLink() async throws {
        let worker = try WorkerProcess(fixture: fixture, name: "g")
        defer { worker.stop() }
        let fingerprint = try ModelFingerprint.compute(Checkpoint(directory: Fixtures.path(fixture)))
        let connection = try RawConnection(worker.endpoint)
        guard case .frame = try connection.handshake(fingerprint: fingerprint) else { throw HarnessError("no WELCOME") }
        let rings = try SharedMemoryChannel.create()
        defer { rings.unlink() }
        _ = try connection.send(SharedMemoryAttachMessage(name: rings.name, ringBytes: rings.ringBytes).frame(requestID: 2))
        guard case .frame(let attached) = connection.receive(), attached.kind == .shmAttached else { throw HarnessError("not attached") }
        try await rings.sendRawForTesting(ByteBuffer(bytes: [0xff, 0xff, 0xff, 0x7f] + [UInt8](repeating: 7, count: 64)))
        try await eventually(.seconds(10), "the worker closes the rings") { rings.isClosed }
        #expect(connection.receive().isClosed)
        #expect(worker.isRunning)
        let pool = try WorkerPool(fingerprint: fingerprint, transport: .shm, logger: testLogger)
        _ = try await pool.add(worker.endpoint)
        _ = try await pool.ping("g")
        await pool.closeAll()
    }
}
