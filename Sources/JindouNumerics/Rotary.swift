import Foundation

/// Rotary position embedding in the "rotate half" layout used by Llama, Qwen3 and GLM4
/// (`apply_rotary_pos_emb` in their modeling files), with partial rotary support: only
/// the first `rotaryDimension` features of each head rotate, the rest pass through.
public struct RotaryEmbedding: Sendable {
    public let headDimension: Int
    public let rotaryDimension: Int
    /// `inv_freq` as `compute_default_rope_parameters` builds it, in float32.
    public let inverseFrequencies: [Float]
    /// Multiplier on cos/sin (`attention_scaling`; 1 for default rope).
    public let attentionScaling: Float

    public init(headDimension: Int, rotaryDimension: Int, base: Double, attentionScaling: Float = 1,
                inverseFrequencies: [Float]? = nil) {
        precondition(rotaryDimension % 2 == 0 && rotaryDimension <= headDimension)
        self.headDimension = headDimension
        self.rotaryDimension = rotaryDimension
        self.attentionScaling = attentionScaling
        self.inverseFrequencies = inverseFrequencies ?? (0..<(rotaryDimension / 2)).map { i in
            // torch: 1.0 / (base ** (arange(0, dim, 2, dtype=float) / dim)), in float32.
            let exponent = Float(2 * i) / Float(rotaryDimension)
            return 1 / Float(pow(Double(base), Double(exponent)))
        }
    }

    /// Rotates `heads` consecutive heads of one token at `position`, in place.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        let half = rotaryDimension / 2
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * half) { table in
            let cosines = table.baseAddress!
            let sines = cosines + half
            for i in 0..<half {
                let angle = Float(position) * inverseFrequencies[i]
                cosines[i] = cos(angle) * attentionScaling
                sines[i] = sin(angle) * attentionScaling
            }
            for h in 0..<heads {
                let head = x + h * headDimension
                for i in 0..<half {
                    let x1 = head[i], x2 = head[i + half]
                    head[i] = x1 * cosines[i] - x2 * sines[i]
                    head[i + half] = x2 * cosines[i] + x1 * sines[i]
                }
            }
        }
    }
}
