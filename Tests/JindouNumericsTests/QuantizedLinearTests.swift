import Foundation
@testable import JindouNumerics
import JindouKernelsGeneric
import JindouTestSupport
import Testing

/// The quantised linear kernels against `linear` on the dequantised matrix.
@Suite("Quantised linear kernels")
struct QuantizedLinearTests {
    /// The block formats the kernels have row kernels for (the others are widened only).
    static let kernelFormats: [BlockFormat] = [.q8_0, .q4_K]

    func randomMatrix(rows: Int, columns: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<(rows * columns)).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001) / 1_000_000 * 0.05
        }
    }

    /// Y = X̂ · Wᵀ in double, X̂ the activations rounded as the int8 kernels do (per 32
    /// columns: d = max|x| / 127, q = x / d rounded to nearest even, x̂ = q · d). For Q4_K the
    /// kernels apply each sub-block's `min` to the exact Σ x, so the emulation does too.
    func int8ActivationProduct(_ x: [Float], tokens: Int, weight: WeightMatrix) -> [Double] {
        let (rows, columns) = (weight.rows, weight.columns)
        var rounded = [Double](repeating: 0, count: x.count)
        for b in 0..<(x.count / 32) {
            let block = x[(32 * b)..<(32 * b + 32)]
            let d = block.map(abs).max()! / 127
            let id: Float = d != 0 ? 1 / d : 0
            for (i, v) in block.enumerated() { rounded[32 * b + i] = Double((v * id).rounded(.toNearestOrEven)) * Double(d) }
        }
        // Per weight: the part scaled with x̂ and the `min` part scaled with x.
        var scaled = weight.floatValues().map(Double.init)
        var offsets = [Double](repeating: 0, count: rows * columns)
        if weight.blockFormat == .q4_K {
            for r in 0..<rows {
                for s in 0..<(columns / 256) {
                    let block = weight.rowPointer(r) + s * Q4_K.bytesPerBlock
                    let dmin = Float(halfBits: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                    for j in 0..<8 {
                        let m = Double(dmin * Float(Q4_K.scaleMin(j, block + 4).min))
                        for i in 0..<32 {
                            let index = r * columns + s * 256 + 32 * j + i
                            scaled[index] += m  // w = (d·sc·q − m): the d·sc·q part
                            offsets[index] = -m
                        }
                    }
                }
            }
        }
        var y = [Double](repeating: 0, count: tokens * rows)
        for t in 0..<tokens {
            for r in 0..<rows {
                var sum = 0.0
                for c in 0..<columns {
                    sum += rounded[t * columns + c] * scaled[r * columns + c] + Double(x[t * columns + c]) * offsets[r * columns + c]
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

    /// The generic fp32-widening kernels (what runs without AVX2), on every machine.
    @Test("generic kernels equal the dequantised product", arguments: kernelFormats)
    func genericKernels(format: BlockFormat) {
        let (rows, columns, tokens) = (9, 512, 3)
        let quantized = WeightMatrix(rows: rows, columns: columns, float32: randomMatrix(rows: rows, columns: columns, seed: 5)).quantized(format)
        let decoded = WeightMatrix(rows: rows, columns: columns, float32: quantized.floatValues())
        let x = randomMatrix(rows: tokens, columns: columns, seed: 6)
        var expected = [Float](repeating: 0, count: tokens * rows)
        x.withUnsafeBufferPointer { linear($0.baseAddress!, tokens: tokens, weight: decoded, into: &expected) }
        let actual = Self.rows(JindouKernelsGeneric.Kernels.self, x, tokens: tokens, weight: quantized)
        let scale = expected.map(abs).max()!
        #expect(zip(expected, actual).allSatisfy { abs($0 - $1) <= 1e-5 * scale })
    }

    /// 512 columns = 16 Q8_0 blocks (the 8-block path only); 544 = 17 (plus the one-block
    /// tail; Q4_K needs multiples of 256).
    @Test("equals the dequantised matrix's product (1 to 13 tokens, odd row counts, BLAS path too)",
          arguments: [(BlockFormat.q8_0, 512), (.q8_0, 544), (.q4_K, 512)])
    func matchesDequantised(format: BlockFormat, columns: Int) {
        let rows = 37
        let dense = WeightMatrix(rows: rows, columns: columns, float32: randomMatrix(rows: rows, columns: columns, seed: 3))
        let quantized = dense.quantized(format)
        #expect(quantized.byteCount == rows * format.rowBytes(columns: columns)!)
        let decoded = WeightMatrix(rows: rows, columns: columns, float32: quantized.floatValues())
        for tokens in [1, 2, 5, 13] {
            let x = randomMatrix(rows: tokens, columns: columns, seed: UInt64(10 + tokens)).map { $0 * 20 }
            var expected = [Float](repeating: 0, count: tokens * rows), blas = expected
            x.withUnsafeBufferPointer { xp in
                linear(xp.baseAddress!, tokens: tokens, weight: decoded, into: &expected)
                linear(xp.baseAddress!, tokens: tokens, weight: quantized, into: &blas)
            }
            let scale = expected.map(abs).max()!
            if tokens >= blasTokenThreshold {
                let worst = zip(expected, blas).map { abs($0 - $1) }.max()!
                #expect(worst <= 1e-5 * scale, "\(format) BLAS tokens \(tokens): max |Δ| \(worst) of \(scale)")
            }
            // Every kernel set this CPU runs (the row kernels serve up to 11 tokens).
            for kernels in KernelDispatch.supported {
                let actual = Self.rows(kernels, x, tokens: tokens, weight: quantized)
                let worst = zip(expected, actual).map { abs($0 - $1) }.max()!
                if kernels.usesInt8Activations {
                    // Exact: the same int8 activations, in double precision.
                    let exact = int8ActivationProduct(x, tokens: tokens, weight: quantized)
                    let worstExact = zip(exact, actual).map { abs(Float($0) - $1) }.max()!
                    #expect(worstExact <= 1e-5 * scale,
                            "\(kernels.name) \(format) tokens \(tokens): max |Δ| \(worstExact) of \(scale) vs int8-activation product")
                    // And the activation rounding stays small against the fp32-activation product.
                    #expect(worst <= 2e-2 * scale, "\(kernels.name) \(format) tokens \(tokens): max |Δ| \(worst) of \(scale)")
                } else {
                    #expect(worst <= 1e-5 * scale, "\(kernels.name) \(format) tokens \(tokens): max |Δ| \(worst) of \(scale)")
                }
            }
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
