import Foundation
@testable import JindouNumerics
import JindouKernelsGeneric
import Testing

/// The activation blocks every kernel set writes (`KernelSet.prepare`) are the same bytes:
/// the SIMD sets' encoders (ActivationBlocks.swift) against the generic set's scalar code,
/// including exact zeros, all-zero blocks, rounding ties, the block maximum's own value and
/// a NaN (which must become 0, not trap).
@Suite("Activation encoding")
struct ActivationEncodingTests {
    /// Activations with the awkward values spread over the blocks.
    static func activations(columns: Int, tokens: Int) -> [Float] {
        var state: UInt64 = 99
        var x = (0..<(columns * tokens)).map { _ -> Float in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001) / 1_000_000 * 3
        }
        for c in 0..<32 { x[c] = 0 }                      // an all-zero block
        for c in 32..<64 { x[c] = Float(c - 48) * 0.5 }   // ties: q = x · 127 / 8 lands on .5
        x[64] = .nan                                       // a diverged activation
        x[100] = -1e30; x[101] = 1e-30                     // huge and tiny in one block
        return x
    }

    @Test("every kernel set writes the same activation blocks", arguments: [BlockFormat.q4_0, .q4_1, .q4_K])
    func sameBytes(weightFormat: BlockFormat) {
        let (columns, tokens) = (512, 3)
        let activation = weightFormat.activationFormat
        let x = Self.activations(columns: columns, tokens: tokens)
        let weight = WeightMatrix(rows: 1, columns: columns, float32: [Float](repeating: 0, count: columns)).quantized(weightFormat)
        let bytes = QuantizedActivations.byteCount(format: activation, tokens: tokens, columns: columns)
        func encoded(_ kernels: any KernelSet.Type) -> [UInt8] {
            x.withUnsafeBufferPointer { xp in
                let prepared = kernels.prepare(xp.baseAddress!, tokens: tokens, weight: weight)!
                return [UInt8](UnsafeRawBufferPointer(start: prepared, count: bytes))
            }
        }
        let reference = encoded(JindouKernelsGeneric.Kernels.self)
        for kernels in KernelDispatch.supported {
            let actual = encoded(kernels)
            let differing = (0..<bytes).filter { actual[$0] != reference[$0] }
            #expect(differing.isEmpty, "\(kernels.name) \(activation): \(differing.count) bytes differ, first at \(differing.first ?? -1)")
        }
    }
}
