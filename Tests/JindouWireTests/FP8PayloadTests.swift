import JindouNumerics
import NIOCore
import Testing
@testable import JindouWire

/// `--wire-dtype fp8`: E4M3 rows with a scale per 128 values of each token, as DeepEP dispatches.
@Suite struct FP8PayloadTests {
    @Test func theFastEncoderIsNearestEvenLikeTheSearch() {
        // Every code's value, the midpoints between neighbours (ties), and a spread of others.
        var values: [Float] = []
        for code in UInt8(0)...0x7E {
            let v = FP8E4M3.float(code)
            values += [v, v.nextUp, v.nextDown]
            if code < 0x7E { values.append((v + FP8E4M3.float(code + 1)) / 2) }
        }
        var generator = SplitMix(seed: 5)
        for _ in 0..<20_000 { values.append(Float(bitPattern: UInt32(truncatingIfNeeded: generator.next()) & 0x43FF_FFFF)) }
        values += [0, 447.9, 448, 460, 464, 1e6, .greatestFiniteMagnitude, 1e-30, .leastNonzeroMagnitude]
        for v in values where v >= 0 {
            #expect(FP8E4M3.encode(v) == FP8E4M3.byte(v), "\\(v)")
            #expect(FP8E4M3.encode(-v) == FP8E4M3.byte(-v), "\\(-v)")
        }
        #expect(FP8E4M3.encode(.nan) & 0x7F == 0x7F)
    }

    @Test(arguments: [64, 128, 300])
    func blocksKeepTheirScaleAndBytes(width: Int) throws {
        var generator = SplitMix(seed: 11)
        // Rows of very different magnitudes, a zero row, and an outlier channel.
        var values: [Float] = []
        for magnitude: Float in [1e-4, 1, 300, 0] {
            for _ in 0..<width { values.append((Float(generator.next() % 2001) / 1000 - 1) * magnitude) }
        }
        values[width + 3] = 5_000
        let payload = TensorPayload.encode(values, as: .fp8, width: width)
        let blocks = (width + 127) / 128
        #expect(payload.readableBytes == WireDType.fp8.payloadBytes(rows: 4, width: width))
        #expect(payload.readableBytes == 4 * (4 * blocks + width))
        let back = try TensorPayload.decode(payload, rows: 4, width: width, as: .fp8, kind: "DISPATCH")
        for r in 0..<4 {
            for b in 0..<blocks {
                let block = values[(r * width + b * 128)..<(r * width + min(width, (b + 1) * 128))]
                let scale = block.map(abs).max()! / 448
                for (a, v) in zip(back[block.indices], block) { #expect(abs(a - v) <= max(abs(v) / 16, scale / 1024)) }
                // The block's largest value is exact: it is 448 × scale.
                if scale > 0 { #expect(back[block.indices].map(abs).max() == block.map(abs).max()) }
            }
        }
        #expect(back[(3 * width)..<(4 * width)].allSatisfy { $0 == 0 })
        // The outlier costs precision only within its own block.
        if width > 128 {
            let far = values[(width + 128)..<(width + min(width, 256))]
            let scale = far.map(abs).max()! / 448
            for (a, v) in zip(back[far.indices], far) { #expect(abs(a - v) <= max(abs(v) / 16, scale / 1024)) }
            #expect(scale < 1)
        }
    }

    @Test func aPayloadOfTheWrongLengthIsRefused() {
        var payload = TensorPayload.encode([Float](repeating: 1, count: 16), as: .fp8, width: 8)
        payload.moveWriterIndex(to: payload.writerIndex - 1)
        #expect(throws: WireError.self) { try TensorPayload.decode(payload, rows: 2, width: 8, as: .fp8, kind: "DISPATCH") }
        // The same bytes read as bf16 rows do not fit either.
        #expect(throws: WireError.self) { try TensorPayload.decode(payload, rows: 2, width: 8, as: .bf16, kind: "DISPATCH") }
    }

    @Test func aCombineAnsweringFP8ComesBackInBF16() {
        #expect(WireDType.fp8.combineDType == .bf16)
        #expect(WireDType.bf16.combineDType == .bf16 && WireDType.f32.combineDType == .f32)
        #expect(WireDType(TensorDType.fp8E4M3) == .fp8 && WireDType.fp8.protobuf == .fp8E4M3)
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
