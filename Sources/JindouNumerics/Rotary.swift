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

    /// Pairs (x[2i], x[2i+1]) rotate together and come out as [evens…, odds…]
    /// (DeepSeek's `rope_interleave`, `apply_rotary_pos_emb_interleave`).
    public let interleaved: Bool

    /// Multi-axis rotary (Qwen-VL's M-RoPE, the vision tower's 2-D rope): frequency i
    /// turns with position coordinate `frequencyAxes[i]` (0 temporal/text, 1 height,
    /// 2 width). nil: every frequency uses coordinate 0.
    public let frequencyAxes: [Int]?

    public init(headDimension: Int, rotaryDimension: Int, base: Double, attentionScaling: Float = 1,
                inverseFrequencies: [Float]? = nil, interleaved: Bool = false, frequencyAxes: [Int]? = nil) {
        precondition(rotaryDimension % 2 == 0 && rotaryDimension <= headDimension)
        precondition(frequencyAxes.map { $0.count == rotaryDimension / 2 && $0.allSatisfy { (0..<3).contains($0) } } ?? true)
        self.frequencyAxes = frequencyAxes
        self.headDimension = headDimension
        self.rotaryDimension = rotaryDimension
        self.attentionScaling = attentionScaling
        self.interleaved = interleaved
        self.inverseFrequencies = inverseFrequencies ?? (0..<(rotaryDimension / 2)).map { i in
            // torch: 1.0 / (base ** (arange(0, dim, 2, dtype=float) / dim)), in float32.
            let exponent = Float(2 * i) / Float(rotaryDimension)
            return 1 / Float(pow(Double(base), Double(exponent)))
        }
    }

    /// YaRN (`_compute_yarn_parameters` in transformers' modeling_rope_utils): frequencies
    /// blended between interpolation (÷ factor) and extrapolation by a linear ramp over the
    /// correction range, and cos/sin multiplied by `attentionFactor`.
    public init(headDimension: Int, rotaryDimension: Int, base: Double, yarnFactor factor: Double,
                originalMaxPositions: Int, betaFast: Double, betaSlow: Double, attentionFactor: Double,
                truncate: Bool = true, interleaved: Bool = false) {
        let dim = rotaryDimension
        func correctionDimension(_ rotations: Double) -> Double {
            Double(dim) * log(Double(originalMaxPositions) / (rotations * 2 * Double.pi)) / (2 * log(base))
        }
        var low = correctionDimension(betaFast), high = correctionDimension(betaSlow)
        if truncate {
            low = low.rounded(.down)
            high = high.rounded(.up)
        }
        low = max(low, 0)
        high = min(high, Double(dim - 1))
        if low == high { high += 0.001 }
        let frequencies: [Float] = (0..<(dim / 2)).map { i in
            let position = Float(pow(Double(base), Double(Float(2 * i) / Float(dim))))
            let extrapolation = 1 / position
            let interpolation = 1 / (Float(factor) * position)
            let ramp = min(max((Float(i) - Float(low)) / (Float(high) - Float(low)), 0), 1)
            let extrapolationFactor = 1 - ramp
            return interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor
        }
        self.init(headDimension: headDimension, rotaryDimension: rotaryDimension, base: base,
                  attentionScaling: Float(attentionFactor), inverseFrequencies: frequencies, interleaved: interleaved)
    }

    /// Rotates `heads` consecutive heads of one token at `position`, in place.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        apply(x, heads: heads, positions: SIMD3(position, position, position))
    }

    /// Rotates `heads` consecutive heads of one token at a multi-axis position
    /// (temporal/text, height, width), in place.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, positions: SIMD3<Int>) {
        let half = rotaryDimension / 2
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * half) { table in
            let cosines = table.baseAddress!
            let sines = cosines + half
            for i in 0..<half {
                let position = positions[frequencyAxes?[i] ?? 0]
                let angle = Float(position) * inverseFrequencies[i]
                cosines[i] = cos(angle) * attentionScaling
                sines[i] = sin(angle) * attentionScaling
            }
            for h in 0..<heads {
                let head = x + h * headDimension
                if interleaved {
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: rotaryDimension) { copy in
                        for i in 0..<rotaryDimension { copy[i] = head[i] }
                        for i in 0..<half {
                            let x1 = copy[2 * i], x2 = copy[2 * i + 1]
                            head[i] = x1 * cosines[i] - x2 * sines[i]
                            head[i + half] = x2 * cosines[i] + x1 * sines[i]
                        }
                    }
                } else {
                    for i in 0..<half {
                        let x1 = head[i], x2 = head[i + half]
                        head[i] = x1 * cosines[i] - x2 * sines[i]
                        head[i + half] = x2 * cosines[i] + x1 * sines[i]
                    }
                }
            }
        }
    }
}
