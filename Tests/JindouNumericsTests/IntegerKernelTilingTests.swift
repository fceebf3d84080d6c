import Foundation
@testable import JindouNumerics
import JindouKernelsGeneric
import Testing

/// The SIMD integer kernels' code paths beyond one token and whole groups of blocks: token
/// tiles of 4, 3, 2 and 1 (prefill shares each decoded weight block between a tile's
/// tokens), block counts that are not a multiple of the kernels' eight-block steps, odd row
/// counts and row ranges that start at an odd row (AVX-512 kernels hold two rows per
/// register), in every kernel set this CPU runs, against the decoded product with ggml's
/// activation rounding.
@Suite("Integer kernel tiles and tails")
struct IntegerKernelTilingTests {
    /// Columns with a tail: 13 blocks of 32 (one group of eight and five more); K formats
    /// three super-blocks.
    static func columns(_ format: BlockFormat) -> Int { format.blockSize == 32 ? 13 * 32 : 3 * 256 }

    @Test("every token count 1…9, block tails, odd rows and odd row ranges, every supported set",
          arguments: BlockFormat.allCases.filter(\.canQuantize))
    func tilesAndTails(format: BlockFormat) {
        let (rows, columns) = (7, Self.columns(format))
        let weight = WeightMatrix(rows: rows, columns: columns,
                                  float32: QuantizedLinearTests().randomMatrix(rows: rows, columns: columns, seed: 77)).quantized(format)
        for tokens in 1...9 {
            var x = QuantizedLinearTests().randomMatrix(rows: tokens, columns: columns, seed: UInt64(90 + tokens)).enumerated().map { i, v in
                i % 11 == 0 ? 0 : v * Float(1 + i % 7) * 20
            }
            for c in 0..<32 { x[c] = 0 }  // an all-zero activation block
            let expected = QuantizedLinearTests.reference(x, tokens: tokens, weight: weight)
            let scale = expected.map(abs).max()!
            for kernels in KernelDispatch.supported {
                var y = [Float](repeating: .nan, count: tokens * rows)
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let call = RowCall(x: xp.baseAddress!, tokens: tokens, weight: weight, y: yp.baseAddress!, outputStride: rows,
                                           prepared: kernels.prepare(xp.baseAddress!, tokens: tokens, weight: weight))
                        // Two ranges: rows 0–2 (odd count) and 3–6 (starting at an odd row).
                        kernels.computeRows(call, 0..<3)
                        kernels.computeRows(call, 3..<rows)
                    }
                }
                let worst = zip(expected, y).map { abs($0 - Double($1)) }.max()!
                #expect(!y.contains { $0.isNaN }, "\(kernels.name) \(format) tokens \(tokens): a row was not written")
                #expect(worst <= 1e-5 * scale, "\(kernels.name) \(format) tokens \(tokens): max |Δ| \(worst) of \(scale)")
            }
        }
    }
}
