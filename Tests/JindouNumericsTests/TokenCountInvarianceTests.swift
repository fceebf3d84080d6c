import Foundation
@testable import JindouNumerics
import JindouTestSupport
import Testing

/// A token's output row does not depend on how many other tokens share the call: what makes
/// speculative verification (several tokens in one step) give exactly the logits of one-token
/// decoding, so greedy output cannot change at a near-tie. Every block format and kernel set,
/// rows of several super-blocks, bit for bit (the grid formats below `gridTableTokens`, float
/// weights below `blasTokenThreshold`).
@Suite("Kernels: a token's row is the same whatever the token count")
struct TokenCountInvarianceTests {
    static let formats = BlockFormat.allCases

    @Test(arguments: formats)
    func severalTokensEqualEachAlone(format: BlockFormat) throws {
        let rows = 5
        let columns = format.blockSize == 256 ? 256 * 8 : 32 * 64
        let encoded = try GridKernelPathTests.matrix(format, rows: rows, columns: columns)
        try encoded.withUnsafeBytes { raw in
            let weight = WeightMatrix(rows: rows, columns: columns, quantized: format, base: raw.baseAddress!, owner: nil)
            // The grid formats decode rows into a table from `gridTableTokens` tokens (prefill),
            // which adds floats in another order: below it they are invariant too.
            let grid: Set<BlockFormat> = [.iq2_xxs, .iq2_xs, .iq2_s, .iq3_xxs, .iq3_s, .iq1_s, .iq1_m]
            for tokens in [2, 3, 4, 5, 8, 9, 15, 33] where !grid.contains(format) || tokens < gridTableTokens {
                let x = GridKernelPathTests.activations(tokens: tokens, columns: columns, seed: UInt64(91 + tokens))
                for kernels in KernelDispatch.supported {
                    let together = GridKernelPathTests.compute(kernels, x, tokens: tokens, weight: weight, rows: 0..<rows, outputStride: rows)
                    var differing: [Int] = []
                    for t in 0..<tokens {
                        let alone = GridKernelPathTests.compute(kernels, Array(x[(t * columns)..<((t + 1) * columns)]), tokens: 1,
                                                                weight: weight, rows: 0..<rows, outputStride: rows)
                        if Array(together[(t * rows)..<((t + 1) * rows)]) != alone { differing.append(t) }
                    }
                    #expect(differing.isEmpty, "\(kernels.name) \(format), \(tokens) tokens: tokens \(differing) differ from one-token calls")
                }
            }
        }
    }

    /// Float weights below the BLAS threshold (the row kernels; at and above it OpenBLAS
    /// sgemm, which a one-token call never uses). Widths with a scalar tail and an odd tile.
    @Test(arguments: [DType.float32, .float16, .bfloat16])
    func floatRowsToo(dtype: DType) throws {
        let rows = 3
        for columns in [2048, 2048 + 16 + 5] {
            let values = GridKernelPathTests.activations(tokens: rows, columns: columns, seed: 5)
            var bytes = [UInt8](repeating: 0, count: rows * columns * dtype.byteSize)
            for (i, v) in values.enumerated() {
                switch dtype {
                case .float16: withUnsafeBytes(of: Float16(v).bitPattern) { bytes[2 * i] = $0[0]; bytes[2 * i + 1] = $0[1] }
                case .bfloat16: withUnsafeBytes(of: UInt16(v.bitPattern >> 16)) { bytes[2 * i] = $0[0]; bytes[2 * i + 1] = $0[1] }
                default: withUnsafeBytes(of: v.bitPattern) { for k in 0..<4 { bytes[4 * i + k] = $0[k] } }
                }
            }
            try bytes.withUnsafeBytes { raw in
                let weight = WeightMatrix(rows: rows, columns: columns, dtype: dtype, base: raw.baseAddress!, owner: nil)
                for tokens in [2, 3, 5, blasTokenThreshold - 1] {
                    let x = GridKernelPathTests.activations(tokens: tokens, columns: columns, seed: UInt64(17 + tokens))
                    for kernels in KernelDispatch.supported {
                        let together = GridKernelPathTests.compute(kernels, x, tokens: tokens, weight: weight, rows: 0..<rows, outputStride: rows)
                        for t in 0..<tokens {
                            let alone = GridKernelPathTests.compute(kernels, Array(x[(t * columns)..<((t + 1) * columns)]), tokens: 1,
                                                                    weight: weight, rows: 0..<rows, outputStride: rows)
                            #expect(Array(together[(t * rows)..<((t + 1) * rows)]) == alone,
                                    "\(kernels.name) \(dtype) \(columns) columns, token \(t) of \(tokens)")
                        }
                    }
                }
            }
        }
    }
}
