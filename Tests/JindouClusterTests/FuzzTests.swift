import Foundation
import JindouModel
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
