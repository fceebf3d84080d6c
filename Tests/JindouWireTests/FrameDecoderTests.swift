import NIOCore
import Testing
import JindouRouting
@testable import JindouWire

func sampleDispatch(tokens: Int = 3, hidden: Int = 8, dtype: WireDType = .f32) -> DispatchMessage {
    var routing = RoutingDecision()
    for t in 0..<tokens { routing.append(experts: [Int32(t % 4), Int32(4 + t % 3)], weights: [0.25, 0.75]) }
    let values = (0..<(tokens * hidden)).map { Float($0) * 0.125 - 1 }
    return DispatchMessage(requestID: 42, layer: 3, placementVersion: 7, hiddenSize: hidden, dtype: dtype,
                           routing: routing, hidden: values)
}

@Suite("Frame decoding is a pure state machine")
struct FrameDecoderTests {
    @Test func crc32cMatchesTheStandardCheckValue() {
        let bytes = Array("123456789".utf8)
        #expect(bytes.withUnsafeBytes { crc32c($0) } == 0xE306_9283)
        let long = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        // Hardware and table paths agree with a bitwise reference.
        var reference: UInt32 = 0xFFFF_FFFF
        for b in long {
            reference ^= UInt32(b)
            for _ in 0..<8 { reference = reference & 1 == 1 ? (reference >> 1) ^ 0x82F6_3B78 : reference >> 1 }
        }
        #expect(long.withUnsafeBytes { crc32c($0) } == ~reference)
    }

    @Test(arguments: [WireDType.f32, .bf16, .fp8])
    func dispatchRoundTripsByteByByte(dtype: WireDType) throws {
        let message = sampleDispatch(dtype: dtype)
        let bytes = try FrameEncoder.encode(message.frame())
        var decoder = FrameDecoder()
        var buffer = ByteBuffer()
        var decoded: Frame?
        for byte in bytes.readableBytesView {
            buffer.writeInteger(byte)
            if let frame = try decoder.decode(&buffer) {
                #expect(decoded == nil)
                decoded = frame
            }
        }
        let back = try DispatchMessage(frame: #require(decoded), expertLimit: 8)
        #expect(back.routing == message.routing && back.layer == 3 && back.placementVersion == 7 && back.requestID == 42)
        switch dtype {
        case .f32: #expect(back.hidden == message.hidden)
        case .bf16: for (a, b) in zip(back.hidden, message.hidden) { #expect(abs(a - b) <= abs(b) / 128) }
        case .fp8:
            // Half an E4M3 step: 1/16 relative, or 2^-10 of the block's scale below the normals (one block here).
            for t in 0..<message.tokenCount {
                let row = message.hidden[(t * 8)..<((t + 1) * 8)]
                let scale = row.map(abs).max()! / 448
                for (a, b) in zip(back.hidden[row.indices], row) { #expect(abs(a - b) <= max(abs(b) / 16, scale / 1024)) }
            }
        }
    }

    @Test func combineCarriesTheWorkersComputeTime() throws {
        let message = CombineMessage(requestID: 9, layer: 2, hiddenSize: 4, dtype: .f32, output: [1, 2, 3, 4, 5, 6, 7, 8],
                                     computeNanoseconds: 1_234_567)
        var buffer = try FrameEncoder.encode(message.frame())
        var decoder = FrameDecoder()
        let back = try CombineMessage(frame: #require(try decoder.decode(&buffer)))
        #expect(back == message)
        // A reply without the field (an older worker) reads as "not measured".
        var legacy = message
        legacy.computeNanoseconds = 0
        var old = try FrameEncoder.encode(legacy.frame())
        #expect(try CombineMessage(frame: #require(try decoder.decode(&old))).computeNanoseconds == 0)
    }

    @Test func severalFramesInOneRead() throws {
        var buffer = ByteBuffer()
        for id in 0..<5 { try FrameEncoder.encode(Heartbeat.frame(.ping, requestID: UInt64(id)), into: &buffer) }
        var decoder = FrameDecoder()
        var ids: [UInt64] = []
        while let frame = try decoder.decode(&buffer) { ids.append(frame.requestID) }
        #expect(ids == [0, 1, 2, 3, 4])
        #expect(buffer.readableBytes == 0)
    }

    @Test func oversizedHeaderIsFatal() {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32.max, endianness: .little)
        var decoder = FrameDecoder()
        #expect(throws: FrameDecoder.DecodingError.self) { try decoder.decode(&buffer) }
        do { _ = try decoder.decode(&buffer) } catch { #expect(!error.recoverable) }
    }

    @Test func garbageHeaderIsFatal() {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(6), endianness: .little)
        buffer.writeBytes([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        var decoder = FrameDecoder()
        do {
            _ = try decoder.decode(&buffer)
            Issue.record("garbage decoded")
        } catch {
            #expect(!error.recoverable)
            if case .malformedHeader = error.error {} else { Issue.record("got \(error.error)") }
        }
    }

    @Test func oversizedPayloadIsRefusedBeforeItArrives() throws {
        let bytes = try FrameEncoder.encode(sampleDispatch(tokens: 64, hidden: 64).frame())
        var decoder = FrameDecoder(maximumPayloadLength: 1024)
        var head = bytes.getSlice(at: 0, length: bytes.readableBytes / 2)!  // only part of the payload
        do {
            _ = try decoder.decode(&head)
            Issue.record("oversized payload accepted")
        } catch {
            #expect(error.error == .payloadTooLarge(length: 64 * 64 * 4, limit: 1024))
            #expect(error.requestID == 42)
        }
    }

    @Test func corruptedPayloadIsRecoverable() throws {
        var bytes = try FrameEncoder.encode(sampleDispatch().frame())
        let last = bytes.writerIndex - 1
        bytes.setInteger(bytes.getInteger(at: last, as: UInt8.self)! ^ 0x40, at: last)
        try FrameEncoder.encode(Heartbeat.frame(.ping, requestID: 9), into: &bytes)
        var decoder = FrameDecoder()
        do {
            _ = try decoder.decode(&bytes)
            Issue.record("corrupted payload accepted")
        } catch {
            #expect(error.recoverable && error.requestID == 42)
            if case .checksumMismatch = error.error {} else { Issue.record("got \(error.error)") }
        }
        // The stream continues with the next frame.
        #expect(try decoder.decode(&bytes)?.requestID == 9)
    }

    @Test func otherProtocolVersionIsNamed() throws {
        var header = FrameHeader()
        header.kind = .ping
        header.protocolVersion = 99
        header.requestID = 5
        let raw: [UInt8] = try header.serializedBytes()
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(raw.count), endianness: .little)
        buffer.writeBytes(raw)
        var decoder = FrameDecoder()
        do {
            _ = try decoder.decode(&buffer)
            Issue.record("other version accepted")
        } catch {
            #expect(error.error == .protocolVersionMismatch(ours: WireProtocol.version, theirs: 99))
            #expect(error.error.description.contains("99") && error.error.description.contains("\(WireProtocol.version)"))
        }
    }
}

@Suite("Message validation names what is wrong")
struct MessageValidationTests {
    func reparse(_ edit: (inout Frame) -> Void) -> WireError? {
        var frame = sampleDispatch().frame()
        edit(&frame)
        do {
            _ = try DispatchMessage(frame: frame, expertLimit: 8)
            return nil
        } catch {
            return error
        }
    }

    @Test func inconsistentRoutingIsRejected() {
        #expect(reparse { $0.header.routing.offsets.removeLast() } != nil)
        #expect(reparse { $0.header.routing.offsets[1] = 100 } != nil)
        #expect(reparse { $0.header.routing.weights.removeLast() } != nil)
        #expect(reparse { $0.header.routing.experts[0] = 8 }?.description.contains("expert 8 is out of range") == true)
        #expect(reparse { $0.header.routing.weights[0] = .nan } != nil)
        #expect(reparse { $0.header.routing.experts[1] = $0.header.routing.experts[0] }?.description.contains("twice") == true)
        #expect(reparse { $0.header.tokenCount = 2 } != nil)
        #expect(reparse { $0.header.hiddenSize = 9 }?.description.contains("payload has") == true)
        #expect(reparse { $0.header.dtype = .f16 } != nil)
        #expect(reparse { $0.header.body = nil } != nil)
        #expect(reparse { _ in } == nil)
    }

    @Test func handshakeMessagesRoundTrip() throws {
        let hello = HelloMessage(modelFingerprint: "abc", coordinatorName: "c0")
        #expect(try HelloMessage(frame: hello.frame()) == hello)
        let welcome = WelcomeMessage(modelFingerprint: "abc", workerName: "w1", experts: [(1, 2), (3, 4)], expertBytes: 99)
        #expect(try WelcomeMessage(frame: welcome.frame()) == welcome)
        let error = ErrorMessage(code: .modelFingerprintMismatch, message: "nope", requestID: 3)
        #expect(throws: WireError.remote(code: "modelFingerprintMismatch", message: "nope")) {
            try WelcomeMessage(frame: error.frame())
        }
    }
}
