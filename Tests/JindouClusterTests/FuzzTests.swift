import Foundation
import JindouBenchmarks
import JindouModel
import JindouTransport
import JindouTestSupport
import JindouWire
import Testing

/// Thousands of random and mutated frames at a live worker: it must answer or close each
/// connection, never crash, and still compute correctly afterwards.
@Suite("Worker fuzzing", .serialized)
struct FuzzTests {
    @Test func randomAndMutatedFramesLeaveTheWorkerUp() throws {
        let fixture = "qwen3-moe-tiny"
        let worker = try WorkerProcess(fixture: fixture, name: "fuzz", extraArguments: ["--max-payload-mb", "4"])
        defer { worker.stop() }
        let faults = FaultTests()
        let fingerprint = try faults.fingerprint
        let valid = Array(try FrameEncoder.encode(faults.dispatch().frame()).readableBytesView)
        let hello = Array(try FrameEncoder.encode(HelloMessage(modelFingerprint: fingerprint, coordinatorName: "fuzz").frame()).readableBytesView)
        var generator = SystemRandomNumberGenerator()
        var seed = UInt64.random(in: 0...UInt64.max, using: &generator)
        print("fuzz seed \(seed)")
        var random = Xorshift(seed: &seed)

        var frames = 0, replies = 0, closes = 0
        var connection = try RawConnection(worker.endpoint, timeoutSeconds: 2)
        var handshaken = false
        while frames < 3000 {
            if !handshaken && random.next() % 2 == 0 {
                connection.send(hello)
                if case .frame = connection.receive() { handshaken = true } else { handshaken = false }
            }
            var bytes: [UInt8]
            switch random.next() % 4 {
            case 0:  // random bytes
                bytes = (0..<Int(random.next() % 200)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            case 1:  // valid frame with flipped bytes
                bytes = valid
                for _ in 0..<(1 + random.next() % 8) {
                    bytes[Int(random.next() % UInt64(bytes.count))] ^= UInt8(truncatingIfNeeded: random.next() | 1)
                }
            case 2:  // valid frame, truncated or extended
                bytes = Array(valid.prefix(Int(random.next() % UInt64(valid.count))))
                if random.next() % 2 == 0 { bytes += valid }
            default:  // header length field mangled
                bytes = valid
                let length = UInt32(truncatingIfNeeded: random.next() % 5 == 0 ? random.next() : random.next() % 300)
                withUnsafeBytes(of: length.littleEndian) { for i in 0..<4 { bytes[i] = $0[i] } }
            }
            frames += 1
            guard connection.send(bytes) else {
                closes += 1
                connection = try RawConnection(worker.endpoint, timeoutSeconds: 2)
                handshaken = false
                continue
            }
            // Read whatever comes back quickly; a silent worker is waiting for more bytes.
            switch connection.receiveQuickly() {
            case .frame: replies += 1
            case .closed:
                closes += 1
                connection = try RawConnection(worker.endpoint, timeoutSeconds: 2)
                handshaken = false
            case .timedOut:
                // Partial frame pending: start afresh so the next case is independent.
                connection = try RawConnection(worker.endpoint, timeoutSeconds: 2)
                handshaken = false
            }
            #expect(worker.isRunning, "worker died after \(frames) frames (seed \(seed))")
            if !worker.isRunning { return }
        }
        print("fuzz: \(frames) frames, \(replies) replies, \(closes) closed connections")
        #expect(replies > 100 && closes > 100)
        try faults.expectHealthy(worker)
    }
}

/// `jindouctl bench fuzz`'s engine, briefly: a secret-protected worker must pass it, and a
/// peer that answers garbage and never closes must fail it (so the judge can fail).
@Suite("Frame fuzzer", .serialized)
struct FrameFuzzerTests {
    @Test func aWorkerPassesAShortFuzzRun() throws {
        let directory = Scratch.url.appendingPathComponent("jindou-fuzz-test-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let token = ClusterSecret.generate()
        let tokenFile = directory.appendingPathComponent("token").path
        FileManager.default.createFile(atPath: tokenFile, contents: Data(token.utf8), attributes: [.posixPermissions: 0o600])
        let worker = try WorkerProcess(fixture: "qwen3-moe-tiny", name: "fuzz-bench", extraArguments: ["--token-file", tokenFile])
        defer { worker.stop() }
        let seed = UInt64.random(in: 1...UInt64.max)
        let fuzzer = try FrameFuzzer(options: .init(target: worker.endpoint, cases: 1500, seed: seed, lanes: 2, secret: try ClusterSecret(token: token),
                                                    healthEvery: 500, workerPID: worker.process.processIdentifier),
                                     model: Fixtures.path("qwen3-moe-tiny"))
        let report = try fuzzer.run { _ in }
        #expect(report.passed, "seed \(seed): undefined \(report.undefinedReplyExamples), hangs \(report.hangExamples), health \(report.failedHealthChecks), final exact \(report.finalDispatchesExact) (\(report.finalDispatchMaxDifference))")
        // The cases reach past the handshake: the worker computed combines and refused bad frames by code.
        #expect((report.repliesByKind["combine"] ?? 0) > 0 && (report.repliesByKind["welcome"] ?? 0) > 0, "\(report.repliesByKind)")
        #expect(report.errorCodes.count >= 4, "\(report.errorCodes)")
        #expect(report.framesSent > report.cases)
    }

    @Test func aPeerThatAnswersGarbageAndNeverClosesFails() throws {
        let listener = try GarbagePeer()
        defer { listener.stop() }
        let fuzzer = try FrameFuzzer(options: .init(target: listener.endpoint, cases: 4, seed: 3, lanes: 1, secret: nil, replyTimeoutSeconds: 1,
                                                    healthEvery: 1000),
                                     model: Fixtures.path("qwen3-moe-tiny"))
        let report = try fuzzer.run { _ in }
        #expect(!report.passed)
        #expect(report.hangs == 4 && report.undefinedReplies >= 1 && report.failedHealthChecks == 1, "\(report.hangs) \(report.undefinedReplies) \(report.failedHealthChecks)")
    }
}

/// Accepts connections and answers each with bytes that are no frame, keeping it open.
final class GarbagePeer: @unchecked Sendable {
    // @unchecked: the descriptor is set once; connections are only appended under the lock.
    let endpoint: Endpoint
    private let fd: Int32
    private var connections: [Int32] = []
    private let lock = NSLock()

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw HarnessError("cannot listen") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        endpoint = Endpoint(host: "127.0.0.1", port: Int(UInt16(bigEndian: address.sin_port)))
        Thread.detachNewThread { [self] in
            while true {
                let connection = accept(fd, nil, nil)
                if connection < 0 { return }
                lock.withLock { connections.append(connection) }
                let garbage: [UInt8] = [3, 0, 0, 0, 0xFF, 0xFF, 0xFF]
                _ = garbage.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        lock.withLock { for connection in connections { close(connection) } }
    }
}

struct Xorshift {
    var state: UInt64
    init(seed: inout UInt64) { state = seed == 0 ? 0x9E37_79B9 : seed }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}

extension RawConnection {
    /// Like `receive`, but gives up after ~20 ms.
    func receiveQuickly() -> Reply {
        setReceiveTimeout(milliseconds: 20)
        defer { setReceiveTimeout(milliseconds: 2000) }
        return receive()
    }
}
