import Foundation

/// How the next token is chosen. `temperature == 0` is greedy (argmax, first index on ties,
/// like `torch.argmax`); otherwise temperature → top-k → top-p → draw, in the order
/// transformers applies its logits warpers.
public struct SamplingParameters: Sendable, Equatable {
    public var temperature: Float
    /// Keep the k most likely tokens (0 = off).
    public var topK: Int
    /// Keep the smallest set of tokens whose probability reaches p (1 = off).
    public var topP: Float
    /// Seed for reproducible sampling; nil draws a random one.
    public var seed: UInt64?

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = SamplingParameters()

    public func validate() throws {
        guard temperature >= 0, temperature.isFinite else {
            throw EngineError.invalidParameter(name: "temperature", reason: "must be a finite number ≥ 0, got \(temperature)")
        }
        guard topK >= 0 else { throw EngineError.invalidParameter(name: "top_k", reason: "must be ≥ 0, got \(topK)") }
        guard topP > 0, topP <= 1 else {
            throw EngineError.invalidParameter(name: "top_p", reason: "must be in (0, 1], got \(topP)")
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and reproducible across platforms.
/// Inlinable: synthetic traces and benchmark data draw hundreds of millions of values.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    @usableFromInline var state: UInt64
    @inlinable public init(seed: UInt64) { state = seed }
    @inlinable public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Draws tokens from logits according to `SamplingParameters`.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var generator: SplitMix64

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        generator = SplitMix64(seed: parameters.seed ?? UInt64.random(in: .min ... .max))
    }

    /// Index of the largest logit (first on ties).
    public static func argmax(_ logits: [Float]) -> Int {
        var best = 0
        for i in logits.indices where logits[i] > logits[best] { best = i }
        return best
    }

    public mutating func sample(_ logits: [Float]) -> Int {
        if parameters.temperature == 0 || logits.count == 1 { return Self.argmax(logits) }
        let (tokens, probabilities) = distribution(logits)
        var draw = uniform()
        for (i, p) in probabilities.enumerated() {
            draw -= p
            if draw < 0 { return tokens[i] }
        }
        return tokens[tokens.count - 1]
    }

    /// The tokens this sampler can draw from `logits` (temperature, top-k, top-p applied),
    /// most likely first, with their probabilities (summing to 1).
    func distribution(_ logits: [Float]) -> (tokens: [Int], probabilities: [Float]) {
        let scaled = logits.map { $0 / parameters.temperature }
        var order = Array(scaled.indices).sorted { scaled[$0] > scaled[$1] || (scaled[$0] == scaled[$1] && $0 < $1) }
        if parameters.topK > 0 && parameters.topK < order.count { order.removeLast(order.count - parameters.topK) }
        let maximum = scaled[order[0]]
        var probabilities = order.map { expf(scaled[$0] - maximum) }
        var total = probabilities.reduce(0, +)
        if parameters.topP < 1 {
            var cumulative: Float = 0
            var keep = probabilities.count
            for (i, p) in probabilities.enumerated() {
                cumulative += p / total
                if cumulative >= parameters.topP {
                    keep = i + 1
                    break
                }
            }
            probabilities.removeLast(probabilities.count - keep)
            order.removeLast(order.count - keep)
            total = probabilities.reduce(0, +)
        }
        return (order, probabilities.map { $0 / total })
    }

    /// A uniform draw in [0, 1) from this sampler's generator.
    mutating func uniform() -> Float {
        Float(Double(generator.next() >> 11) / Double(1 << 53))
    }
}
