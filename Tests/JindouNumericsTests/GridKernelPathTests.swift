import Foundation
@testable import JindouNumerics
import JindouTestSupport
import Testing

/// The paths of the grid/ternary/MXFP4 SIMD kernels (JindouKernelsGeneric/GridRowsSIMD.swift)
/// that the fixture-sized test in QuantizedLinearTests does not reach: several tokens over a
/// row decoded once into the stack table (in passes of four tokens, and from 32 tokens two
/// rows at a time, with an odd row left over), rows wider than one table (the partial sums
/// of each table added into the output), MXFP4 rows whose block count is not a multiple of
/// the 8-block step, and row ranges that start and end inside the matrix with an output
/// stride wider than the range. Every supported kernel set against the double-precision product of
/// the decoded weights with the activations rounded as ggml rounds them.
@Suite("Grid kernel paths")
struct GridKernelPathTests {
    static let formats: [BlockFormat] = [.iq2_xxs, .iq2_xs, .iq2_s, .iq3_xxs, .iq3_s, .iq1_s, .iq1_m, .tq1_0, .tq2_0, .mxfp4]

    /// `rows` × `columns` weights made of the random-block fixture's blocks, taken in order
    /// and repeated (every block is self-contained, so any sequence of them is valid).
    static func matrix(_ format: BlockFormat, rows: Int, columns: Int) throws -> [UInt8] {
        let fixture = try #require(try QuantFixtures.format(format).fixtures.first { $0.kind == "random" })
        let blocks = try QuantFixtures.bytes(fixture.encoded)
        let available = blocks.count / format.bytesPerBlock
        let needed = rows * columns / format.blockSize
        var bytes: [UInt8] = []
        bytes.reserveCapacity(needed * format.bytesPerBlock)
        for b in 0..<needed {
            let start = (b % available) * format.bytesPerBlock
            bytes += blocks[start..<(start + format.bytesPerBlock)]
        }
        return bytes
    }

    /// Activations with a spread of magnitudes and exact zeros (deterministic).
    static func activations(tokens: Int, columns: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<(tokens * columns)).map { i in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let v = Float(Int64(bitPattern: state >> 11) % 2_000_001) / 1_000_000
            return i % 11 == 0 ? 0 : v * Float(1 + i % 7)
        }
    }

    /// `kernels.computeRows` over `rows` into a buffer of `tokens × outputStride` NaNs.
    static func compute(_ kernels: any KernelSet.Type, _ x: [Float], tokens: Int, weight: WeightMatrix,
                        rows: Range<Int>, outputStride: Int) -> [Float] {
        var y = [Float](repeating: .nan, count: tokens * outputStride)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                let x = xp.baseAddress!
                kernels.computeRows(RowCall(x: x, tokens: tokens, weight: weight, y: yp.baseAddress!, outputStride: outputStride,
                                            prepared: kernels.prepare(x, tokens: tokens, weight: weight)), rows)
            }
        }
        return y
    }

    /// Columns per format: more than one decoded table (8 super-blocks; MXFP4: 64 blocks),
    /// and for MXFP4 block counts with a remainder after the 8-block steps.
    static func widths(_ format: BlockFormat) -> [Int] {
        format == .mxfp4 ? [32 * 65, 32 * 35] : [256 * 10]
    }

    @Test("one and several tokens over rows wider than one decoded table equal the rounded product", arguments: formats)
    func tokensAndWidths(format: BlockFormat) throws {
        let rows = 3
        for columns in Self.widths(format) {
            let encoded = try Self.matrix(format, rows: rows, columns: columns)
            try encoded.withUnsafeBytes { raw in
                let weight = WeightMatrix(rows: rows, columns: columns, quantized: format, base: raw.baseAddress!, owner: nil)
                for tokens in [1, 2, 3, 8, 9, 33] {
                    let x = Self.activations(tokens: tokens, columns: columns, seed: UInt64(7 + tokens))
                    let expected = QuantizedLinearTests.reference(x, tokens: tokens, weight: weight)
                    let scale = try #require(expected.map(abs).max())
                    #expect(scale > 0)
                    for kernels in KernelDispatch.supported {
                        let actual = Self.compute(kernels, x, tokens: tokens, weight: weight, rows: 0..<rows, outputStride: rows)
                        let worst = zip(expected, actual).map { abs($0 - Double($1)) }.max()!
                        #expect(worst <= 1e-5 * scale, "\(kernels.name) \(format) \(columns) columns, \(tokens) tokens: max |Δ| \(worst) of \(scale)")
                    }
                }
            }
        }
    }

    @Test("a row range inside the matrix writes exactly its rows at the output stride", arguments: formats)
    func rowRanges(format: BlockFormat) throws {
        let (rows, columns, range, stride) = (11, format.blockSize == 256 ? 512 : 256, 3..<10, 13)
        let encoded = try Self.matrix(format, rows: rows, columns: columns)
        try encoded.withUnsafeBytes { raw in
            let weight = WeightMatrix(rows: rows, columns: columns, quantized: format, base: raw.baseAddress!, owner: nil)
            for tokens in [1, 4, 33] {
                let x = Self.activations(tokens: tokens, columns: columns, seed: UInt64(30 + tokens))
                let expected = QuantizedLinearTests.reference(x, tokens: tokens, weight: weight)
                let scale = try #require(expected.map(abs).max())
                for kernels in KernelDispatch.supported {
                    let actual = Self.compute(kernels, x, tokens: tokens, weight: weight, rows: range, outputStride: stride)
                    for t in 0..<tokens {
                        for r in 0..<stride {
                            let value = actual[t * stride + r]
                            if range.contains(r) {
                                let error = abs(Double(value) - expected[t * rows + r])
                                #expect(error <= 1e-5 * scale, "\(kernels.name) \(format) token \(t) row \(r): |Δ| \(error) of \(scale)")
                            } else {
                                #expect(value.isNaN, "\(kernels.name) \(format) token \(t): row \(r) outside \(range) was written")
                            }
                        }
                    }
                }
            }
        }
    }
}
