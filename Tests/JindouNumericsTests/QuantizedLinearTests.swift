import Foundation
@testable import JindouNumerics
import JindouKernelsGeneric
import JindouTestSupport
import Testing

/// The quantised linear kernels against `linear` on the dequantised matrix.
@Suite("Quantised linear kernels")
struct QuantizedLinearTests {
    func randomMatrix(rows: Int, columns: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<(rows * columns)).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001) / 1_000_000 * 0.05
        }
    }

    /// The activations as ggml-cpu rounds them for `format` (an emulation written from
    /// ggml-cpu's `quantize_row_q8_0` / `_q8_1` (AVX path) and `quantize_row_q8_K_ref`):
    /// the dequantised values x̂, and for Q8_1 each block's rounded s with its exact d·Σq.
    static func roundedActivations(_ x: [Float], format: ActivationFormat) -> (values: [Double], sums: [(rounded: Double, exact: Double)]) {
        var values = [Double](repeating: 0, count: x.count)
        var sums: [(Double, Double)] = []
        let size = format.blockSize
        for b in 0..<(x.count / size) {
            let block = Array(x[(size * b)..<(size * b + size)])
            if format == .q8_K {
                let m = block.max { abs($0) < abs($1) }!
                guard m != 0 else { continue }
                let iscale = -127 / m
                let d = 1 / iscale
                for (i, v) in block.enumerated() { values[size * b + i] = Double(min(127, (iscale * v).rounded(.toNearestOrEven))) * Double(d) }
            } else {
                let maximum = block.map(abs).max()!
                let d = maximum / 127, inverse: Float = maximum != 0 ? 127 / maximum : 0
                let q = block.map { ($0 * inverse).rounded(.toNearestOrEven) }
                let dh = Double(Float(Float16(d)))
                for (i, v) in q.enumerated() { values[size * b + i] = Double(v) * dh }
                let total = q.reduce(0, +)
                sums.append((Double(Float(Float16(d * total))), dh * Double(total)))
            }
        }
        return (values, sums)
    }

    /// Y = X̂ · Ŵᵀ in double: the format's decoded weights against the activations rounded
    /// as ggml rounds them; for Q4_1/Q5_1 the min term uses the rounded s, as ggml's does.
    static func reference(_ x: [Float], tokens: Int, weight: WeightMatrix) -> [Double] {
        let format = weight.blockFormat!
        let (rows, columns) = (weight.rows, weight.columns)
        let (values, sums) = roundedActivations(x, format: format.activationFormat)
        let w = weight.floatValues()
        var y = [Double](repeating: 0, count: tokens * rows)
        for t in 0..<tokens {
            for r in 0..<rows {
                var sum = 0.0
                for c in 0..<columns { sum += values[t * columns + c] * Double(w[r * columns + c]) }
                if format == .q4_1 || format == .q5_1 {
                    for b in 0..<(columns / 32) {
                        let m = Double(Float(halfBits: weight.rowPointer(r).loadUnaligned(fromByteOffset: b * format.bytesPerBlock + 2, as: UInt16.self)))
                        let s = sums[t * (columns / 32) + b]
                        sum += m * (s.rounded - s.exact)
                    }
                }
                y[t * rows + r] = sum
            }
        }
        return y
    }

    /// Rows of `x · Wᵀ` computed by kernel set `kernels` (one row range, no threads).
    static func rows(_ kernels: any KernelSet.Type, _ x: [Float], tokens: Int, weight: WeightMatrix) -> [Float] {
        var y = [Float](repeating: 0, count: tokens * weight.rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                let x = xp.baseAddress!
                kernels.computeRows(RowCall(x: x, tokens: tokens, weight: weight, y: yp.baseAddress!, outputStride: weight.rows,
                                            prepared: kernels.prepare(x, tokens: tokens, weight: weight)), 0..<weight.rows)
            }
        }
        return y
    }

    /// Every format's integer kernel in every kernel set this CPU runs (the generic one on
    /// every machine) against the double-precision product of the decoded weights and the
    /// activations rounded as ggml rounds them: only the float summation order differs.
    /// Weights: the random valid blocks of the quantisation fixtures (every IQ grid entry).
    @Test("integer kernels equal the decoded product with ggml's activation rounding", arguments: BlockFormat.allCases)
    func kernelsEqualTheRoundedProduct(format: BlockFormat) throws {
        let fixture = try #require(try QuantFixtures.format(format).fixtures.first { $0.kind == "random" })
        let encoded = try QuantFixtures.bytes(fixture.encoded)
        try encoded.withUnsafeBytes { raw in
            let weight = WeightMatrix(rows: fixture.rows, columns: fixture.columns, quantized: format, base: raw.baseAddress!, owner: nil)
            for tokens in [1, 3, 5] {
                // Activations with a spread of magnitudes, zeros and one all-zero block.
                var x = randomMatrix(rows: tokens, columns: fixture.columns, seed: UInt64(40 + tokens)).enumerated().map { i, v in
                    i % 7 == 0 ? 0 : v * Float(1 + i % 5)
                }
                for c in 0..<min(256, x.count) { x[c] = 0 }
                let expected = Self.reference(x, tokens: tokens, weight: weight)
                let scale = expected.map(abs).max()!
                #expect(scale > 0)
                for kernels in KernelDispatch.supported {
                    let actual = Self.rows(kernels, x, tokens: tokens, weight: weight)
                    let worst = zip(expected, actual).map { abs($0 - Double($1)) }.max()!
                    #expect(worst <= 1e-5 * scale, "\(kernels.name) \(format) tokens \(tokens): max |Δ| \(worst) of \(scale)")
                }
            }
            _ = raw
        }
    }

    /// Through `linear` (threads, every token count incl. prefill-sized batches): the same
    /// integer kernels, so the result does not change with the token count.
    @Test("linear on quantised weights equals the rounded product at every token count", arguments: [BlockFormat.q8_0, .q4_K, .q6_K, .iq4_xs])
    func linearAtEveryTokenCount(format: BlockFormat) {
        let (rows, columns) = (37, 512)
        let quantized = WeightMatrix(rows: rows, columns: columns, float32: randomMatrix(rows: rows, columns: columns, seed: 3)).quantized(format)
        #expect(quantized.byteCount == rows * format.rowBytes(columns: columns)!)
        for tokens in [1, 2, 13, 40] {
            let x = randomMatrix(rows: tokens, columns: columns, seed: UInt64(10 + tokens)).map { $0 * 20 }
            var actual = [Float](repeating: 0, count: tokens * rows)
            x.withUnsafeBufferPointer { linear($0.baseAddress!, tokens: tokens, weight: quantized, into: &actual) }
            let expected = Self.reference(x, tokens: tokens, weight: quantized)
            let scale = expected.map(abs).max()!
            let worst = zip(expected, actual).map { abs($0 - Double($1)) }.max()!
            #expect(worst <= 1e-5 * scale, "\(format) tokens \(tokens): max |Δ| \(worst) of \(scale)")
        }
        // Row slices share the quantised memory.
        let slice = quantized.rows(5..<9)
        #expect(slice.floatValues() == Array(quantized.floatValues()[(5 * columns)..<(9 * columns)]))
    }

    /// Prefill widens row tiles through `KernelSet.widenRows`: every format, every kernel
    /// set this CPU runs, bit for bit like the `gguf` package (the random-block fixtures).
    @Test("every block format widens bit for bit like the reference decoder, every supported set", arguments: BlockFormat.allCases)
    func widensEveryFormat(format: BlockFormat) throws {
        let fixture = try #require(try QuantFixtures.format(format).fixtures.first { $0.kind == "random" })
        let encoded = try QuantFixtures.bytes(fixture.encoded), expected = try QuantFixtures.floats(fixture.decoded!)
        encoded.withUnsafeBytes { raw in
            let weight = WeightMatrix(rows: fixture.rows, columns: fixture.columns, quantized: format, base: raw.baseAddress!, owner: nil)
            for kernels in KernelDispatch.supported {
                var widened = [Float](repeating: .nan, count: (fixture.rows - 1) * fixture.columns)
                widened.withUnsafeMutableBufferPointer { kernels.widenRows(weight, 1..<fixture.rows, into: $0.baseAddress!) }
                #expect(QuantFixtures.differing(widened, Array(expected[fixture.columns...])).isEmpty, "\(kernels.name) \(format)")
            }
        }
    }
}
