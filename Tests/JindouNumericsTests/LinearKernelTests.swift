import Foundation
import Testing
@testable import JindouNumerics

/// Deterministic pseudo-random floats in [-1, 1).
func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Double(state >> 40) / Double(1 << 24)) * 2 - 1
    }
}

/// Stores `values` as `dtype` bytes and returns a matrix over them plus the values the
/// matrix really holds (rounded to the dtype), for an exact double-precision reference.
func matrix(_ values: [Float], rows: Int, columns: Int, dtype: DType) -> (WeightMatrix, [Float]) {
    let storage = OwnedBytes(byteCount: rows * columns * dtype.byteSize)
    var held = values
    switch dtype {
    case .float32:
        values.withUnsafeBytes { storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    case .bfloat16:
        let p = storage.pointer.assumingMemoryBound(to: UInt16.self)
        for i in values.indices {
            p[i] = BFloat16Conversion.bits(from: values[i])
            held[i] = BFloat16Conversion.float(fromBits: p[i])
        }
    case .float16:
        let p = storage.pointer.assumingMemoryBound(to: Float16.self)
        for i in values.indices {
            p[i] = Float16(values[i])
            held[i] = Float(p[i])
        }
    default:
        fatalError()
    }
    return (WeightMatrix(rows: rows, columns: columns, dtype: dtype, base: UnsafeRawPointer(storage.pointer), owner: storage), held)
}

@Suite("Linear kernels equal a double-precision reference")
struct LinearKernelTests {
    @Test(arguments: [DType.float32, .bfloat16, .float16], [1, 3, 4, 5, 11, 12, 33])
    func linearMatchesReference(dtype: DType, tokens: Int) {
        // 37 columns: exercises the 16-wide vector body and the scalar tail.
        for (rows, columns) in [(29, 37), (64, 128)] {
            let (w, held) = matrix(randomFloats(rows * columns, seed: 7), rows: rows, columns: columns, dtype: dtype)
            let x = randomFloats(tokens * columns, seed: 11)
            let bias = randomFloats(rows, seed: 13)
            var y = [Float](repeating: .nan, count: tokens * rows)
            x.withUnsafeBufferPointer { xb in
                bias.withUnsafeBufferPointer { bb in
                    y.withUnsafeMutableBufferPointer { yb in
                        linear(xb.baseAddress!, tokens: tokens, weight: w, bias: bb.baseAddress!, into: yb.baseAddress!)
                    }
                }
            }
            for t in 0..<tokens {
                for r in 0..<rows {
                    var reference = Double(bias[r])
                    for c in 0..<columns { reference += Double(held[r * columns + c]) * Double(x[t * columns + c]) }
                    #expect(abs(Double(y[t * rows + r]) - reference) < 1e-4, "dtype \(dtype) t \(t) r \(r)")
                }
            }
        }
    }

    @Test func serialAndParallelAgree() {
        let (w, _) = matrix(randomFloats(300 * 64, seed: 3), rows: 300, columns: 64, dtype: .bfloat16)
        for tokens in [1, 7, 20] {
            let x = randomFloats(tokens * 64, seed: 5)
            var a = [Float](repeating: 0, count: tokens * 300), b = a
            x.withUnsafeBufferPointer { xb in
                a.withUnsafeMutableBufferPointer { linear(xb.baseAddress!, tokens: tokens, weight: w, into: $0.baseAddress!) }
                b.withUnsafeMutableBufferPointer { linearSerial(xb.baseAddress!, tokens: tokens, weight: w, into: $0.baseAddress!) }
            }
            for i in a.indices { #expect(abs(a[i] - b[i]) < 1e-5) }
        }
    }

    @Test func bfloat16RoundsToNearestEven() {
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even one (1.0).
        #expect(BFloat16Conversion.bits(from: 1 + 1.0 / 256) == BFloat16Conversion.bits(from: 1))
        // 1 + 3·2^-8 is halfway too; the even neighbour is 1 + 2^-6.
        #expect(BFloat16Conversion.float(fromBits: BFloat16Conversion.bits(from: 1 + 3.0 / 256)) == 1 + 1.0 / 64)
        #expect(BFloat16Conversion.float(fromBits: BFloat16Conversion.bits(from: -2.5)) == -2.5)
        #expect(BFloat16Conversion.float(fromBits: BFloat16Conversion.bits(from: .nan)).isNaN)
    }
}

@Suite("Element-wise kernels")
struct ElementwiseKernelTests {
    @Test func rmsNormMatchesDefinition() {
        let x = randomFloats(2 * 10, seed: 1)
        let w = randomFloats(10, seed: 2)
        var y = [Float](repeating: 0, count: 20)
        rmsNorm(x, rows: 2, width: 10, weight: w, epsilon: 1e-6, into: &y)
        for row in 0..<2 {
            let slice = x[(row * 10)..<(row * 10 + 10)].map(Double.init)
            let scale = 1 / (slice.map { $0 * $0 }.reduce(0, +) / 10 + 1e-6).squareRoot()
            for i in 0..<10 {
                #expect(abs(Double(y[row * 10 + i]) - Double(w[i]) * slice[i] * scale) < 1e-5)
            }
        }
    }

    @Test func softmaxSumsToOneAndIsShiftInvariant() {
        var a: [Float] = [1, 2, 3, 1000]
        var b: [Float] = [-999, -998, -997, 0]
        softmaxInPlace(&a, count: 4)
        softmaxInPlace(&b, count: 4)
        #expect(abs(a.reduce(0, +) - 1) < 1e-6)
        for i in 0..<4 { #expect(abs(a[i] - b[i]) < 1e-6) }
    }

    @Test func swigluIsSiluTimesUp() {
        var gate: [Float] = [-2, 0, 0.5, 3]
        let up: [Float] = [1, 2, -1, 0.25]
        let expected = zip(gate, up).map { g, u in Double(g) / (1 + exp(-Double(g))) * Double(u) }
        swiglu(gate: &gate, up: up, count: 4)
        for i in 0..<4 { #expect(abs(Double(gate[i]) - expected[i]) < 1e-6) }
    }

    @Test(arguments: [16, 8])
    func rotaryRotatesPairsAndPassesTheRest(rotaryDimension: Int) {
        let rope = RotaryEmbedding(headDimension: 16, rotaryDimension: rotaryDimension, base: 10_000)
        let original = randomFloats(2 * 16, seed: 9)
        var x = original
        rope.apply(&x, heads: 2, position: 5)
        let half = rotaryDimension / 2
        for h in 0..<2 {
            for i in 0..<half {
                let angle = 5.0 * pow(10_000.0, -Double(2 * i) / Double(rotaryDimension))
                let x1 = Double(original[h * 16 + i]), x2 = Double(original[h * 16 + i + half])
                #expect(abs(Double(x[h * 16 + i]) - (x1 * cos(angle) - x2 * sin(angle))) < 1e-5)
                #expect(abs(Double(x[h * 16 + i + half]) - (x2 * cos(angle) + x1 * sin(angle))) < 1e-5)
            }
            for i in rotaryDimension..<16 { #expect(x[h * 16 + i] == original[h * 16 + i]) }
        }
    }

    @Test func attentionOverOnePositionReturnsItsValue() {
        // With a single cached position the softmax weight is 1: output = value row.
        let q = randomFloats(4 * 8, seed: 1), k = randomFloats(2 * 8, seed: 2), v = randomFloats(2 * 8, seed: 3)
        var out = [Float](repeating: 0, count: 32)
        var scores = [Float](repeating: 0, count: 1)
        attendOneToken(query: q, heads: 4, kvHeads: 2, headDimension: 8, keys: k, values: v, rowStride: 16,
                       length: 1, scale: 0.3, scores: &scores, into: &out)
        for h in 0..<4 {
            for i in 0..<8 { #expect(out[h * 8 + i] == v[(h / 2) * 8 + i]) }
        }
    }

    /// Head sizes with vector bodies and scalar tails (128, 72, 7), grouped heads and a
    /// sliding window: softmax(q·kᵀ·scale)·v against a double-precision reference.
    @Test(arguments: [128, 72, 7])
    func attentionMatchesDoublePrecisionReference(headDimension d: Int) {
        let heads = 4, kvHeads = 2, length = 37, first = 5, scale: Float = 0.125
        let q = randomFloats(heads * d, seed: 11), k = randomFloats(length * kvHeads * d, seed: 12)
        let v = randomFloats(length * kvHeads * d, seed: 13)
        var out = [Float](repeating: 0, count: heads * d)
        var scores = [Float](repeating: 0, count: length)
        attendOneToken(query: q, heads: heads, kvHeads: kvHeads, headDimension: d, keys: k, values: v, rowStride: kvHeads * d,
                       first: first, length: length, scale: scale, scores: &scores, into: &out)
        for h in 0..<heads {
            let kv = h / (heads / kvHeads)
            let logits = (first..<length).map { p in
                (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * Double(k[(p * kvHeads + kv) * d + $1]) } * Double(scale)
            }
            let top = logits.max()!
            let weights = logits.map { exp($0 - top) }
            let total = weights.reduce(0, +)
            for i in 0..<d {
                let expected = zip(first..<length, weights).reduce(0.0) { $0 + $1.1 / total * Double(v[($1.0 * kvHeads + kv) * d + i]) }
                #expect(abs(Double(out[h * d + i]) - expected) < 1e-5, "head \(h) element \(i)")
            }
        }
    }
}

@Suite("FP8 E4M3 block-scaled weights")
struct FP8KernelTests {
    @Test func everyByteDecodesToItsE4M3Value() {
        for byte in UInt8(0)...255 where byte & 0x7F != 0x7F {  // 0x7F/0xFF are NaN
            let sign: Float = byte & 0x80 != 0 ? -1 : 1
            let e = Int(byte >> 3) & 0xF, m = Float(byte & 7)
            let expected = e == 0 ? sign * m / 8 * pow(2, -6) : sign * (1 + m / 8) * pow(2, Float(e - 7))
            #expect(FP8E4M3.float(byte) == expected, "byte \(byte)")
        }
        #expect(FP8E4M3.float(0x7E) == 448)
        #expect(FP8E4M3.float(FP8E4M3.byte(0.3)) == 0.3125)
    }

    @Test(arguments: [1, 5, 13])
    func blockScaledLinearMatchesDequantisedReference(tokens: Int) {
        // 70 × 100 with 32 × 32 blocks: partial blocks on both axes.
        let rows = 70, columns = 100, block = 32
        let raw = randomFloats(rows * columns, seed: 21).map { $0 * 3 }
        let rowBlocks = (rows + block - 1) / block, columnBlocks = (columns + block - 1) / block
        var scales = [Float](repeating: 0, count: rowBlocks * columnBlocks)
        var bytes = [UInt8](repeating: 0, count: rows * columns)
        for rb in 0..<rowBlocks {
            for cb in 0..<columnBlocks {
                var maximum: Float = 0
                for r in (rb * block)..<min(rows, (rb + 1) * block) {
                    for c in (cb * block)..<min(columns, (cb + 1) * block) { maximum = max(maximum, abs(raw[r * columns + c])) }
                }
                let scale = max(maximum, 1e-12) / 448
                scales[rb * columnBlocks + cb] = scale
                for r in (rb * block)..<min(rows, (rb + 1) * block) {
                    for c in (cb * block)..<min(columns, (cb + 1) * block) { bytes[r * columns + c] = FP8E4M3.byte(raw[r * columns + c] / scale) }
                }
            }
        }
        let storage = OwnedBytes(byteCount: bytes.count)
        bytes.withUnsafeBytes { storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let scaleStorage = OwnedBytes(byteCount: scales.count * 4)
        scales.withUnsafeBytes { scaleStorage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let weight = WeightMatrix(
            rows: rows, columns: columns, dtype: .float8E4M3, base: UnsafeRawPointer(storage.pointer), owner: storage,
            blockScales: BlockScales(values: UnsafePointer(scaleStorage.pointer.assumingMemoryBound(to: Float.self)),
                                     blockRows: block, blockColumns: block, blockColumnCount: columnBlocks, owner: scaleStorage))
        let dequantised = weight.floatValues()
        let x = randomFloats(tokens * columns, seed: 5)
        var y = [Float](repeating: .nan, count: tokens * rows)
        x.withUnsafeBufferPointer { xb in y.withUnsafeMutableBufferPointer { linear(xb.baseAddress!, tokens: tokens, weight: weight, into: $0.baseAddress!) } }
        for t in 0..<tokens {
            for r in 0..<rows {
                var reference = 0.0
                for c in 0..<columns { reference += Double(dequantised[r * columns + c]) * Double(x[t * columns + c]) }
                #expect(abs(Double(y[t * rows + r]) - reference) < 1e-4 * max(1, abs(reference)))
            }
        }
        // Dequantisation is close to the original weights (the quantisation error).
        #expect(zip(raw, dequantised).allSatisfy { abs($0 - $1) <= abs($0) / 8 + 1e-6 })
        // Row slices keep their blocks' scales.
        let slice = weight.rows(40..<70).floatValues()
        #expect(Array(dequantised[(40 * columns)...]) == slice)
    }
}
